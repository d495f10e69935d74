import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { type ExportField, ExportPacketBuilder, encodeRecord } from '../../src/export/packet-builder.js';
import { writeUdpPcap } from '../../src/pcap/pcap.js';
import { CLI, type RunningService, startService, waitFor } from '../support/service.js';
import { tempDir } from '../support/temp.js';

/**
 * A benchmark smoke run in CI: 300,000 NetFlow v9 records (31 per datagram) replayed over UDP at
 * 100,000 records/s into `flowsentry serve`; every record must be stored and no datagram dropped by the
 * kernel or the queue. The rate is a tenth of what the benchmark shows lossless, so this fails on a
 * broken path, not on a slow machine. No timing is asserted.
 */
const scratch = tempDir();
let service: RunningService | null = null;
afterAll(async () => {
  await service?.stop();
  scratch.remove();
});

const F = (id: number, length: number): ExportField => ({ id, length });
const FIELDS = [F(8, 4), F(12, 4), F(7, 2), F(11, 2), F(4, 1), F(1, 4), F(2, 4), F(22, 4), F(21, 4), F(6, 1)];
const RECORDS = 300_000;
const PER_PACKET = 31;

describe('lossless smoke', () => {
  test('300k records at 100k records/s are all stored', async () => {
    const now = Math.floor(Date.now() / 1000);
    const payloads: Uint8Array[] = [
      new ExportPacketBuilder(9, 7)
        .templates([{ id: 300, fields: FIELDS }])
        .build({ exportSecs: now, sequence: 0, sysUptimeMs: 100_000 }),
    ];
    for (let i = 0; i < RECORDS; i += PER_PACKET) {
      const records = Array.from({ length: Math.min(PER_PACKET, RECORDS - i) }, (_, j) =>
        encodeRecord(FIELDS, [
          `10.${(i + j) >> 16}.${((i + j) >> 8) & 255}.${(i + j) & 255}`,
          '192.0.2.80',
          40000,
          443,
          6,
          1000,
          2,
          90_000,
          99_000,
          0x18,
        ]),
      );
      payloads.push(
        new ExportPacketBuilder(9, 7)
          .data(300, records)
          .build({ exportSecs: now, sequence: payloads.length, sysUptimeMs: 100_000 }),
      );
    }
    const pcap = join(scratch.path, 'load.pcap');
    writeFileSync(
      pcap,
      writeUdpPcap(
        payloads.map((payload, i) => ({
          timeMs: i,
          srcAddress: '127.0.0.1',
          dstAddress: '127.0.0.1',
          srcPort: 40000,
          dstPort: 2055,
          payload,
        })),
      ),
    );
    service = await startService({ dataDir: join(scratch.path, 'data') });
    const pps = Math.round((100_000 / RECORDS) * payloads.length);
    const replay = spawnSync(
      process.execPath,
      [
        CLI,
        'replay',
        pcap,
        '--to',
        `127.0.0.1:${service.netflowPort}`,
        '--pps',
        String(pps),
        '--from',
        '127.0.6.1',
      ],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(replay.status, replay.stderr).toBe(0);
    expect(JSON.parse(replay.stdout)).toMatchObject({ sent: payloads.length });
    const summary = await waitFor(
      async () => {
        const r = await service!.get<{ flows: number; bytes: number }>(
          '/api/v1/flows/summary?from=1970-01-01T00:00:00Z&to=2200-01-01T00:00:00Z&exporter=127.0.6.1',
        );
        return r.body.flows === RECORDS ? r.body : undefined;
      },
      30_000,
      `${RECORDS} stored records`,
    );
    expect(summary).toEqual({ flows: RECORDS, bytes: RECORDS * 1000, packets: RECORDS * 2 });
    const { body } = await service.get<{
      listeners: Array<{ packets: number; queue_dropped_packets: number; kernel: { drops: number } }>;
    }>('/api/v1/collector');
    const listener = body.listeners[0]!;
    expect(listener).toMatchObject({
      packets: payloads.length,
      queue_dropped_packets: 0,
      kernel: { drops: 0 },
    });
    const exporters = await service.get<{
      items: Array<{ address: string; sequence_lost: number; records: number }>;
    }>('/api/v1/exporters');
    expect(exporters.body.items.find((i) => i.address === '127.0.6.1')).toMatchObject({
      records: RECORDS,
      sequence_lost: 0,
    });
  });
});
