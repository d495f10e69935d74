import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type CollectedFlow, CollectingSink, Decoder } from '../../src/decoder/index.js';
import { openStore, queryRows, type Store } from '../../src/storage/clickhouse.js';
import { type RunningService, sendDatagrams, startService, waitFor } from '../support/service.js';
import { tempDir } from '../support/temp.js';
import { loadPayloads, loadSequences, type VendorSequence } from '../support/vendor-fixtures.js';

/**
 * Every vendor sequence through the real path: UDP datagrams from its own loopback address into
 * `flowsentry serve` (receive thread → ring → decoder thread → spool → chDB), checked through the
 * API while running and row by row in the store afterwards, against the in-process decoder.
 */
interface Stat {
  address: string;
  version: number;
  domain: number;
  records: number;
  option_records: number;
  decode_errors: number;
  packets: number;
}

const scratch = tempDir();
const sequences = loadSequences();
const addressOf = (index: number) => `127.0.1.${index + 1}`;
let service: RunningService;
let store: Store | null = null;

/** What the in-process decoder makes of a sequence sent from `address`. */
function decodeLocally(sequence: VendorSequence, address: string): CollectedFlow[] {
  const sink = new CollectingSink();
  const decoder = new Decoder(sink);
  const exporter = decoder.exporter(address);
  for (const payload of loadPayloads(sequence)) decoder.decode(exporter, payload, 0);
  return sink.flows;
}

beforeAll(async () => {
  service = await startService({ dataDir: join(scratch.path, 'data') });
});

afterAll(async () => {
  await service?.stop();
  await store?.close();
  scratch.remove();
});

describe('vendor captures over UDP into the running service', () => {
  test('every sequence is decoded, counted per exporter and visible in the summary within 5 s', async () => {
    for (const [index, sequence] of sequences.entries()) {
      const port = sequence.version === 10 ? service.ipfixPort : service.netflowPort;
      await sendDatagrams(loadPayloads(sequence), port, addressOf(index));
    }
    const sent = Date.now();
    const expectedTotal = sequences.reduce((sum, s, i) => sum + decodeLocally(s, addressOf(i)).length, 0);
    const summary = await waitFor(
      async () => {
        const r = await service.get<{ flows: number; bytes: number; packets: number }>(
          '/api/v1/flows/summary?from=1970-01-01T00:00:00Z&to=2200-01-01T00:00:00Z',
        );
        return r.body.flows === expectedTotal ? r.body : undefined;
      },
      5_000,
      `${expectedTotal} flows in the summary`,
    );
    expect(Date.now() - sent).toBeLessThan(5_000);
    const allLocal = sequences.flatMap((s, i) => decodeLocally(s, addressOf(i)));
    expect(summary).toEqual({
      flows: expectedTotal,
      bytes: allLocal.reduce((s, f) => s + f.bytes, 0),
      packets: allLocal.reduce((s, f) => s + f.packets, 0),
    });

    const { body } = await service.get<{ items: Stat[] }>('/api/v1/exporters');
    for (const [index, sequence] of sequences.entries()) {
      const streams = body.items.filter((s) => s.address === addressOf(index) && s.version !== 0);
      const records = streams.reduce((sum, s) => sum + s.records, 0);
      if (sequence.accept_records) expect(sequence.accept_records, sequence.name).toContain(records);
      else expect(records, sequence.name).toBe(sequence.records);
      expect(
        streams.reduce((sum, s) => sum + s.option_records, 0),
        sequence.name,
      ).toBe(sequence.option_records);
      if (!sequence.expected_error) {
        expect(
          streams.reduce((sum, s) => sum + s.decode_errors, 0),
          sequence.name,
        ).toBe(0);
      }
      expect(
        streams.every((s) => s.version === sequence.version),
        sequence.name,
      ).toBe(true);
    }
  });

  test('per-exporter summaries match the records of that exporter', async () => {
    for (const [index, sequence] of sequences.entries()) {
      const local = decodeLocally(sequence, addressOf(index));
      const { status, body } = await service.get<{ flows: number; bytes: number; packets: number }>(
        `/api/v1/flows/summary?from=1970-01-01T00:00:00Z&to=2200-01-01T00:00:00Z&exporter=${addressOf(index)}`,
      );
      expect(status).toBe(200);
      expect(body, sequence.name).toEqual({
        flows: local.length,
        bytes: local.reduce((s, f) => s + f.bytes, 0),
        packets: local.reduce((s, f) => s + f.packets, 0),
      });
    }
  });

  test('the stored rows equal the in-process decode, column by column', async () => {
    expect(await service.stop()).toBe(0);
    store = await openStore(
      { url: '', user: 'default', password: '', database: 'flowsentry' },
      service.dataDir,
    );
    for (const [index, sequence] of sequences.entries()) {
      const address = addressOf(index);
      const rows = await queryRows<Record<string, unknown>>(
        store,
        `SELECT toUnixTimestamp64Milli(flow_start) AS flow_start, toUnixTimestamp64Milli(flow_end) AS flow_end,
                * EXCEPT (time_received, flow_start, flow_end)
         FROM flows WHERE exporter_address = toIPv6({a:String})`,
        { a: address },
      );
      const mapped = (a: string) => (a.includes(':') ? a : `::ffff:${a}`);
      const expected = decodeLocally(sequence, address).map(
        ({ elements: _e, template_id: _t, time_received: _r, ...f }) => ({
          ...f,
          exporter_address: mapped(f.exporter_address),
          src_addr: mapped(f.src_addr),
          dst_addr: mapped(f.dst_addr),
          next_hop: mapped(f.next_hop),
          direction: ['unknown', 'ingress', 'egress'][f.direction],
        }),
      );
      const key = (r: Record<string, unknown>) => JSON.stringify(Object.entries(r).sort());
      expect(rows.map(key).sort(), sequence.name).toEqual(expected.map(key).sort());
    }
  });
});
