import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp.js';
import { loadPayloads, loadSequences } from '../../test/support/vendor-fixtures.js';
import { silentLogger } from '../common/logger.js';
import { Decoder } from '../decoder/index.js';
import { openStore, queryRows, type Store } from './clickhouse.js';
import { FlowWriter } from './flow-writer.js';
import { migrate } from './migrate.js';
import { RowBinaryEncoder } from './row-binary.js';
import { Spool, type SpoolFile } from './spool.js';

/**
 * Storage down, on the real embedded engine: the flows table is renamed away (every INSERT fails as
 * the store would when unreachable), the spool takes chunks up to its bound and refuses the rest
 * (the caller counts them as dropped), and when the table is back the writer inserts what was
 * spooled, in spool order, once.
 */
const scratch = tempDir();
let store: Store;
const log = silentLogger();

beforeAll(async () => {
  store = await openStore(
    { url: '', user: 'default', password: '', database: 'flowsentry_down' },
    scratch.path,
  );
  await migrate(store, log);
});

afterAll(async () => {
  await store?.close();
  scratch.remove();
});

describe('storage down', () => {
  test('the spool holds records up to its bound, counts the rest, and replays in order when the store returns', async () => {
    const payload = loadPayloads(loadSequences().find((s) => s.name === 'netflow5_mikrotik')!)[0]!;
    // Each chunk: 4 datagrams, 120 records, 19,200 bytes (19 KiB in the spool's count).
    const spool = new Spool(join(scratch.path, 'spool'), 16 * 19 * 1024);
    const inserted: string[] = [];
    const writer = new FlowWriter(store, spool, log, {
      maxBatchFiles: 3,
      retryMinMs: 50,
      retryMaxMs: 400,
      crashPoint: (_point, files) => {
        inserted.push(...files.map((f) => f.name));
      },
    });
    writer.start();
    const base = Date.now() - 3_600_000;

    await store.client.command({ query: 'RENAME TABLE flows TO flows_away' });
    const encoder = new RowBinaryEncoder();
    const decoder = new Decoder(encoder);
    const exporter = decoder.exporter('198.51.100.9');
    let offered = 0;
    let dropped = 0;
    const spooled: SpoolFile[] = [];
    for (let chunk = 0; chunk < 24; chunk++) {
      for (let d = 0; d < 4; d++) decoder.decode(exporter, payload, base + chunk * 10_000 + d);
      const { bytes, rows } = encoder.take();
      offered += rows;
      const file = spool.write(bytes, rows, base + chunk);
      if (file) {
        spooled.push(file);
        writer.enqueue(file);
      } else {
        dropped += rows;
      }
    }
    // Let the writer fail six times (backoff 50 ms doubling to 400 ms) against the missing table.
    const downAt = performance.now();
    while (writer.stats.insertFailures < 6) await new Promise((r) => setTimeout(r, 20));
    expect(writer.stats.insertedRows).toBe(0);
    expect(spooled).toHaveLength(16);
    expect(dropped).toBe(8 * 120);

    await store.client.command({ query: 'RENAME TABLE flows_away TO flows' });
    const backAt = performance.now();
    await writer.drained();
    const replayMs = performance.now() - backAt;
    await writer.stop(false);
    const [row] = await queryRows<{ n: number }>(
      store,
      "SELECT count() AS n FROM flows WHERE exporter_address = toIPv6('::ffff:198.51.100.9')",
    );
    console.log(
      `storage down ${((backAt - downAt) / 1000).toFixed(1)} s: ${offered} records offered, ${offered - dropped} spooled, ` +
        `${dropped} dropped at the spool bound, ${row!.n} stored; replay ${replayMs.toFixed(0)} ms after the store returned; ` +
        `${writer.stats.insertFailures} failed inserts`,
    );
    expect(row!.n).toBe(offered - dropped);
    expect(writer.stats.insertedRows).toBe(offered - dropped);
    // In spool order, each file once.
    expect(inserted).toEqual(spooled.map((f) => f.name));
    expect(spool.bytes).toBe(0);
  });
});
