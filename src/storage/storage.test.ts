import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp.js';
import { loadPayloads, loadSequences } from '../../test/support/vendor-fixtures.js';
import { silentLogger } from '../common/logger.js';
import { type CollectedFlow, collectFlow, Decoder, type FlowRow, type FlowSink } from '../decoder/index.js';
import { openStore, queryRows, type Store } from './clickhouse.js';
import { FLOW_COLUMNS } from './flow-columns.js';
import { FlowWriter } from './flow-writer.js';
import { applyRetention, migrate, splitSql } from './migrate.js';
import { RowBinaryEncoder } from './row-binary.js';
import { Spool } from './spool.js';

/** Encodes every row and keeps what the decoder produced, to compare with what the store returns. */
class TeeSink implements FlowSink {
  readonly expected: CollectedFlow[] = [];
  constructor(readonly encoder: RowBinaryEncoder) {}
  push(row: FlowRow): void {
    this.encoder.push(row);
    this.expected.push(collectFlow(row, null, null));
  }
}

const scratch = tempDir();
let store: Store;
const log = silentLogger();

beforeAll(async () => {
  store = await openStore(
    { url: '', user: 'default', password: '', database: 'flowsentry_test' },
    scratch.path,
  );
  await migrate(store, log);
});

afterAll(async () => {
  await store?.close();
  scratch.remove();
});

describe('storage on the embedded engine', () => {
  test('the flows table has exactly the columns the encoder writes, in any order', async () => {
    const described = await queryRows<{ name: string; type: string }>(store, 'DESCRIBE TABLE flows');
    // LowCardinality is a storage choice; on the wire (RowBinary) the type is the inner one.
    const stored = described.map((c) => [c.name, c.type.replace(/^LowCardinality\((.*)\)$/, '$1')]);
    expect(stored.sort()).toEqual(FLOW_COLUMNS.map((c) => [...c]).sort());
    expect(described.find((c) => c.name === 'exporter_address')?.type).toBe('LowCardinality(IPv6)');
  });

  test('migrations are recorded and not applied twice', async () => {
    expect(await migrate(store, log)).toEqual([]);
    const rows = await queryRows<{ name: string }>(
      store,
      'SELECT name FROM schema_migrations FINAL ORDER BY version',
    );
    expect(rows.map((r) => r.name)).toEqual([
      '0001_create_flows.sql',
      '0002_create_rollups.sql',
      '0003_create_findings.sql',
      '0004_create_siem_outbox.sql',
      '0005_create_allowlist_rules.sql',
      '0006_create_detector_settings.sql',
    ]);
  });

  test('every vendor record round-trips through RowBinary, the spool and an INSERT unchanged', async () => {
    const encoder = new RowBinaryEncoder();
    const sink = new TeeSink(encoder);
    const decoder = new Decoder(sink);
    // Receive times within the retention, or the TTL would drop the rows.
    let received = Date.now() - 3_600_000;
    for (const [index, sequence] of loadSequences().entries()) {
      // One exporter address per sequence, so no template state is shared.
      const exporter = decoder.exporter(`203.0.113.${index + 1}`);
      for (const payload of loadPayloads(sequence)) {
        received += 1000;
        decoder.decode(exporter, payload, received);
      }
    }
    const spool = new Spool(join(scratch.path, 'spool'), 1 << 30);
    const { bytes, rows } = encoder.take();
    expect(rows).toBe(sink.expected.length);
    expect(bytes.byteLength).toBe(rows * 160);
    const writer = new FlowWriter(store, spool, log);
    writer.start();
    // Two files in one batch, to exercise the multi-file insert.
    const half = Math.floor(rows / 2) * 160;
    writer.enqueue(spool.write(bytes.subarray(0, half), half / 160)!);
    writer.enqueue(spool.write(bytes.subarray(half), rows - half / 160)!);
    await writer.drained();
    await writer.stop(false);
    expect(writer.stats).toMatchObject({ insertedRows: rows, queuedFiles: 0, insertFailures: 0 });
    expect(spool.bytes).toBe(0);

    const stored = await queryRows<Record<string, unknown>>(
      store,
      `SELECT toUnixTimestamp(time_received) * 1000 AS time_received, toUnixTimestamp64Milli(flow_start) AS flow_start,
              toUnixTimestamp64Milli(flow_end) AS flow_end, * EXCEPT (time_received, flow_start, flow_end)
       FROM flows ORDER BY time_received, flow_start, src_addr, dst_addr, src_port, dst_port, bytes`,
    );
    const key = (f: Record<string, unknown>) =>
      [f.time_received, f.flow_start, f.src_addr, f.dst_addr, f.src_port, f.dst_port, f.bytes].join('|');
    const expected = sink.expected
      .map(({ elements: _e, template_id: _t, ...f }) => ({
        ...f,
        time_received: Math.floor(f.time_received / 1000) * 1000,
        // The store prints IPv4 as a mapped IPv6 address.
        exporter_address: `::ffff:${f.exporter_address}`,
        src_addr: f.src_addr.includes(':') ? f.src_addr : `::ffff:${f.src_addr}`,
        dst_addr: f.dst_addr.includes(':') ? f.dst_addr : `::ffff:${f.dst_addr}`,
        next_hop: f.next_hop.includes(':') ? f.next_hop : `::ffff:${f.next_hop}`,
        direction: ['unknown', 'ingress', 'egress'][f.direction],
      }))
      .sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    const actual = [...stored].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    expect(actual.length).toBe(expected.length);
    expect(actual).toEqual(expected);

    // Rollups received the same totals.
    const [rollup] = await queryRows<{ flows: number; bytes: number }>(
      store,
      'SELECT sum(flows) AS flows, sum(bytes) AS bytes FROM flows_1m',
    );
    const totalBytes = sink.expected.reduce((s, f) => s + f.bytes, 0);
    expect(rollup).toEqual({ flows: rows, bytes: totalBytes });
  });

  test('a batch replayed after a crash is not stored twice', async () => {
    const [before] = await queryRows<{ n: number }>(store, 'SELECT count() AS n FROM flows');
    const encoder = new RowBinaryEncoder();
    const decoder = new Decoder(encoder);
    const sequence = loadSequences().find((s) => s.name === 'netflow5_mikrotik')!;
    decoder.decode(decoder.exporter('198.51.100.1'), loadPayloads(sequence)[0]!, Date.now());
    const chunk = encoder.take();
    const spool = new Spool(join(scratch.path, 'spool-replay'), 1 << 30);
    const file = spool.write(chunk.bytes, chunk.rows)!;
    // First run inserts and "crashes" before releasing the file (a hook that never returns); the next
    // run recovers and replays it.
    let inserted!: () => void;
    const atCrash = new Promise<void>((resolve) => {
      inserted = resolve;
    });
    const hooked = new FlowWriter(store, spool, log, {
      crashPoint: () => {
        inserted();
        return new Promise<void>(() => undefined);
      },
    });
    hooked.start();
    hooked.enqueue(file);
    await atCrash;
    const restarted = new Spool(spool.dir, 1 << 30);
    const recovered = restarted.recover();
    expect(recovered.batches.map((b) => b.files.map((f) => f.name))).toEqual([[file.name]]);
    expect(recovered.files).toEqual([]);
    const second = new FlowWriter(store, restarted, log);
    second.start();
    second.enqueueRecovered(recovered);
    await second.drained();
    await second.stop(false);
    const [after] = await queryRows<{ n: number }>(store, 'SELECT count() AS n FROM flows');
    expect(after!.n - before!.n).toBe(30);
    expect(restarted.recover().files).toEqual([]);
  });

  test("the writer's deduplication token does not outlive its INSERT", async () => {
    // Embedded: a token left on the session would make this second INSERT (same rows, no token) a
    // silent duplicate of the writer's batch.
    const [before] = await queryRows<{ n: number }>(store, 'SELECT count() AS n FROM flows');
    await store.client.command({
      query: 'INSERT INTO flows (time_received, proto) SELECT now(), 6 FROM numbers(7)',
    });
    await store.client.command({
      query: 'INSERT INTO flows (time_received, proto) SELECT now(), 6 FROM numbers(7)',
    });
    const [after] = await queryRows<{ n: number }>(store, 'SELECT count() AS n FROM flows');
    expect(after!.n - before!.n).toBe(14);
  });

  test('retention follows the configuration', async () => {
    await applyRetention(store, { flowsDays: 7, rollup1mDays: 30, rollup1hDays: 400 }, log);
    const tables = await queryRows<{ name: string; engine_full: string }>(
      store,
      "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() AND name LIKE 'flows%'",
    );
    const ttl = (name: string) =>
      /toIntervalDay\((\d+)\)/.exec(tables.find((t) => t.name === name)!.engine_full)?.[1];
    expect([ttl('flows'), ttl('flows_1m'), ttl('flows_1h')]).toEqual(['7', '30', '400']);
  });

  test('statements split on a semicolon at the end of a line, comments dropped', () => {
    expect(splitSql('-- c\nCREATE TABLE a (x UInt8);\n\n-- d\nSELECT 1;\nSELECT 2')).toEqual([
      'CREATE TABLE a (x UInt8)',
      'SELECT 1',
      'SELECT 2',
    ]);
  });
});
