import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { openStore, queryRows } from '../../src/storage/clickhouse.js';
import { sendDatagrams, startService } from '../support/service.js';
import { tempDir } from '../support/temp.js';
import { loadPayloads, loadSequences } from '../support/vendor-fixtures.js';

/**
 * SIGTERM while records are in flight (in the ring, in the decoder's unflushed chunk, queued for the
 * writer): the service stops receiving, flushes and inserts them, and exits 0 within a bound; the
 * store then holds every record sent.
 */
const scratch = tempDir();
afterAll(() => scratch.remove());

/** The service's own bound: the writer gets 10 s to drain (src/main.ts); start-up to exit. */
const SHUTDOWN_BOUND_MS = 15_000;

describe('SIGTERM', () => {
  test('in-flight records are flushed and stored, and the service exits 0 within the bound', async () => {
    const dataDir = join(scratch.path, 'data');
    const service = await startService({ dataDir, env: { FLOWSENTRY_LOG_LEVEL: 'warn' } });
    const payload = loadPayloads(loadSequences().find((s) => s.name === 'netflow5_mikrotik')!)[0]!;
    const datagrams = 400;
    // 400 v5 datagrams of 30 records, then SIGTERM at once: the decoder's chunk (flushed every
    // storage.batch.maxDelayMs, 1 s) still holds them.
    await sendDatagrams(
      Array.from({ length: datagrams }, () => payload),
      service.netflowPort,
      '127.0.5.1',
    );
    const started = performance.now();
    const code = await service.stop();
    const stoppedMs = performance.now() - started;
    console.log(`SIGTERM: ${datagrams * 30} records offered, exit ${code} after ${stoppedMs.toFixed(0)} ms`);
    expect(code, service.output()).toBe(0);
    expect(stoppedMs).toBeLessThan(SHUTDOWN_BOUND_MS);

    const store = await openStore(
      { url: '', user: 'default', password: '', database: 'flowsentry' },
      dataDir,
    );
    try {
      const [row] = await queryRows<{ n: number }>(
        store,
        "SELECT count() AS n FROM flows WHERE exporter_address = toIPv6('::ffff:127.0.5.1')",
      );
      console.log(`SIGTERM: ${row!.n} of ${datagrams * 30} records stored`);
      expect(row!.n).toBe(datagrams * 30);
    } finally {
      await store.close();
    }
  }, 120_000);
});
