import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp.js';
import { batchToken, Spool, type SpoolFile } from './spool.js';

const scratch = tempDir();
afterAll(() => scratch.remove());
const chunk = (rows: number) => new Uint8Array(rows * 160).fill(7);

describe('spool', () => {
  test('refuses a write past its limit (the caller counts the records) and takes more after a release', () => {
    const spool = new Spool(join(scratch.path, 'limit'), 64 * 1024);
    const first = spool.write(chunk(200), 200)!; // 32000 bytes = 32 KiB rounded up
    const second = spool.write(chunk(200), 200)!;
    expect(spool.bytes).toBe(64 * 1024);
    expect(spool.write(chunk(1), 1)).toBeNull();
    spool.release(first);
    expect(spool.bytes).toBe(32 * 1024);
    expect(spool.write(chunk(200), 200)).not.toBeNull();
    spool.release(second);
    spool.release(second); // twice: nothing happens
    expect(spool.bytes).toBe(32 * 1024);
  });

  test('recovery lists complete files oldest first, deletes incomplete ones, and counts their size', () => {
    const dir = join(scratch.path, 'recover');
    const writer = new Spool(dir, 1 << 30);
    const files = [
      writer.write(chunk(10), 10, 1_000),
      writer.write(chunk(20), 20, 3_000),
      writer.write(chunk(30), 30, 2_000),
    ];
    writeFileSync(join(dir, 'flows-v1-0000000000001-00000009-1.rb.tmp'), chunk(5));
    writeFileSync(join(dir, 'notes.txt'), 'not a spool file');
    const restarted = new Spool(dir, 1 << 30);
    const { files: recovered, discarded } = restarted.recover();
    expect(discarded).toBe(1);
    expect(recovered.map((f) => [f.name, f.rows])).toEqual([
      [files[0]!.name, 10],
      [files[2]!.name, 30],
      [files[1]!.name, 20],
    ]);
    // 1600, 3200 and 4800 bytes, each rounded up to whole KiB.
    expect(restarted.bytes).toBe((2 + 4 + 5) * 1024);
    expect(readdirSync(dir).some((f) => f.endsWith('.tmp'))).toBe(false);
  });

  test('recorded batches come back as recorded; one whose deletion had begun is finished', () => {
    const dir = join(scratch.path, 'manifests');
    const writer = new Spool(dir, 1 << 30);
    const [a, b, c, d, e] = [1, 2, 3, 4, 5].map((i) => writer.write(chunk(i), i, i * 1000)!) as [
      SpoolFile,
      SpoolFile,
      SpoolFile,
      SpoolFile,
      SpoolFile,
    ];
    // [c, a] recorded in that order (not name order); [b, d] recorded and then b deleted; e loose.
    writer.recordBatch({ token: batchToken([c, a]), files: [c, a] });
    writer.recordBatch({ token: batchToken([b, d]), files: [b, d] });
    writer.release(b);
    const restarted = new Spool(dir, 1 << 30);
    const recovery = restarted.recover();
    expect(recovery.batches.map((x) => [x.token, x.files.map((f) => f.name)])).toEqual([
      [batchToken([c, a]), [c.name, a.name]],
    ]);
    expect(recovery.files.map((f) => f.name)).toEqual([e.name]);
    expect(recovery.completed).toBe(1);
    expect(existsSync(d.path)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.startsWith('batch-'))).toEqual([
      `batch-${batchToken([c, a])}.json`,
    ]);
    // c (3 rows), a (1) and e (5): 480, 160 and 800 bytes, each one KiB.
    expect(restarted.bytes).toBe(3 * 1024);
  });

  test('the batch token is a function of the files, in order', () => {
    const spool = new Spool(join(scratch.path, 'tokens'), 1 << 30);
    const a = spool.write(chunk(1), 1)!;
    const b = spool.write(chunk(2), 2)!;
    expect(batchToken([a, b])).toBe(batchToken([{ ...a }, { ...b }]));
    expect(batchToken([a, b])).not.toBe(batchToken([a]));
    expect(batchToken([a, b])).not.toBe(batchToken([b, a]));
    expect(batchToken([a, b])).toMatch(/^[0-9a-f]{32}$/);
  });

  test('a write that fails gives its reservation back and leaves no partial file', () => {
    const dir = join(scratch.path, 'vanishing');
    const spool = new Spool(dir, 1 << 30);
    rmSync(dir, { recursive: true });
    expect(() => spool.write(chunk(10), 10)).toThrow(/ENOENT/);
    expect(spool.bytes).toBe(0);
  });

  test('a rejected file is moved aside and no longer counted; releases are reported', () => {
    const dir = join(scratch.path, 'reject');
    const spool = new Spool(dir, 1 << 30);
    const freed: number[] = [];
    spool.onRelease = (kib) => freed.push(kib);
    const bad = spool.write(chunk(10), 10)!;
    spool.reject(bad);
    expect(existsSync(join(dir, 'rejected', bad.name))).toBe(true);
    expect(spool.bytes).toBe(0);
    expect(freed).toEqual([2]);
  });
});
