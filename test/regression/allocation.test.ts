import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { REPO_ROOT } from '../support/service.js';

/**
 * The decode + encode hot path must not allocate per record (ingest-performance issue: a regression
 * guard that is not a timed test). The probe decodes 2000 datagrams with the compiled decoder and the
 * RowBinary encoder after a warm-up, with a young generation large enough that no scavenge runs, and
 * reports heap bytes allocated per record. Today that is one DataView per datagram, ~5 bytes per
 * record; a single number boxed per record (16 bytes) or an object per record fails the bound.
 */
const PROBE = join(REPO_ROOT, 'test', 'regression', 'allocation-probe.mjs');
const MAX_BYTES_PER_RECORD = 10;

describe('hot-path allocation', () => {
  test.each(['v9', 'v5', 'ipfix', 'ipfix-section'])(
    `%s: at most ${MAX_BYTES_PER_RECORD} heap bytes per decoded and encoded record`,
    (kind) => {
      const run = spawnSync(
        process.execPath,
        [
          '--expose-gc',
          '--single-threaded',
          '--max-semi-space-size=256',
          PROBE,
          join(REPO_ROOT, 'dist'),
          kind,
        ],
        { encoding: 'utf8', timeout: 120_000 },
      );
      expect(run.status, run.stderr).toBe(0);
      const result = JSON.parse(run.stdout) as { kind: string; records: number; bytesPerRecord: number };
      expect(result.records).toBeGreaterThanOrEqual(50_000);
      expect(result.bytesPerRecord).toBeGreaterThan(0);
      expect(result.bytesPerRecord).toBeLessThanOrEqual(MAX_BYTES_PER_RECORD);
    },
  );
});
