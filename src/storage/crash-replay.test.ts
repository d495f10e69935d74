import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp.js';
import { loadPayloads, loadSequences } from '../../test/support/vendor-fixtures.js';
import { silentLogger } from '../common/logger.js';
import { Decoder } from '../decoder/index.js';
import { openStore, queryRows, type Store } from './clickhouse.js';
import { FlowWriter, type FlowWriterOptions } from './flow-writer.js';
import { migrate } from './migrate.js';
import { RowBinaryEncoder } from './row-binary.js';
import { Spool, type SpoolFile } from './spool.js';

/**
 * A crash between the INSERT of a batch and the deletion of its files, then a restart that batches
 * the files it finds differently, on the real embedded engine. The crash is a hook that never returns:
 * the disk is left exactly as a killed process leaves it, and the first writer never runs again.
 */
const scratch = tempDir();
let store: Store;
const log = silentLogger();

beforeAll(async () => {
  store = await openStore(
    { url: '', user: 'default', password: '', database: 'flowsentry_crash' },
    scratch.path,
  );
  await migrate(store, log);
});

afterAll(async () => {
  await store?.close();
  scratch.remove();
});

/** Spool files of decoded vendor v5 records (one datagram each), with distinct receive times. */
function spoolFiles(spool: Spool, count: number, baseMs: number): { files: SpoolFile[]; rows: number } {
  const payload = loadPayloads(loadSequences().find((s) => s.name === 'netflow5_mikrotik')!)[0]!;
  const encoder = new RowBinaryEncoder();
  const decoder = new Decoder(encoder);
  const exporter = decoder.exporter('198.51.100.7');
  const files: SpoolFile[] = [];
  let rows = 0;
  for (let i = 0; i < count; i++) {
    decoder.decode(exporter, payload, baseMs + i * 1000);
    const chunk = encoder.take();
    files.push(spool.write(chunk.bytes, chunk.rows, baseMs + i)!);
    rows += chunk.rows;
  }
  return { files, rows };
}

async function countSince(ms: number): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    store,
    `SELECT count() AS n FROM flows
     WHERE time_received >= toDateTime(${Math.floor(ms / 1000)}, 'UTC')
       AND time_received < toDateTime(${Math.floor(ms / 1000) + 60}, 'UTC')`,
  );
  return row!.n;
}

const never = new Promise<void>(() => undefined);

describe('crash between INSERT and file deletion', () => {
  test('the flows table keeps insert tokens (non-replicated deduplication window)', async () => {
    const [row] = await queryRows<{ engine_full: string }>(
      store,
      "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'flows'",
    );
    expect(/non_replicated_deduplication_window = (\d+)/.exec(row!.engine_full)?.[1]).toBe('1000');
  });

  test.each([
    { crashAfterBatches: 1, firstBatchFiles: 2, restartBatchFiles: 32 },
    { crashAfterBatches: 2, firstBatchFiles: 3, restartBatchFiles: 1 },
    { crashAfterBatches: 1, firstBatchFiles: 6, restartBatchFiles: 4 },
  ])(
    'stored rows equal the records sent after a crash and a restart with other batching (%o)',
    async ({ crashAfterBatches, firstBatchFiles, restartBatchFiles }) => {
      const dir = join(scratch.path, `spool-${crashAfterBatches}-${firstBatchFiles}-${restartBatchFiles}`);
      // Each case has its own hour, so counts do not mix.
      const baseMs = Date.now() - 3_600_000 * (crashAfterBatches + firstBatchFiles * 3 + restartBatchFiles);
      const spool = new Spool(dir, 1 << 30);
      const { files, rows } = spoolFiles(spool, 6, baseMs);
      expect(rows).toBe(180);

      let inserted = 0;
      let crashed!: () => void;
      const crash = new Promise<void>((resolve) => {
        crashed = resolve;
      });
      const options: Partial<FlowWriterOptions> = {
        maxBatchFiles: firstBatchFiles,
        crashPoint: (point) => {
          if (point !== 'inserted' || ++inserted < crashAfterBatches) return;
          crashed();
          return never;
        },
      };
      const first = new FlowWriter(store, spool, log, options);
      first.start();
      for (const f of files) first.enqueue(f);
      await crash;
      const storedAtCrash = await countSince(baseMs);
      expect(storedAtCrash).toBe(Math.min(6, crashAfterBatches * firstBatchFiles) * 30);

      // Restart: a new spool over the same directory, another batching.
      const restarted = new Spool(dir, 1 << 30);
      const recovered = restarted.recover();
      const second = new FlowWriter(store, restarted, log, { maxBatchFiles: restartBatchFiles });
      second.start();
      second.enqueueRecovered(recovered);
      await second.drained();
      await second.stop(false);

      expect(await countSince(baseMs)).toBe(rows);
      expect(restarted.recover().files).toEqual([]);
      expect(restarted.bytes).toBe(0);
    },
  );
});
