import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { MAX_ROW_BYTES } from './flow-columns.js';

/**
 * The spool: RowBinary chunks of decoded flows on disk between the decoders and the store. Decoders
 * write a file per chunk (written as .tmp, then renamed); the FlowWriter inserts files in name order and
 * deletes them once the store has them. Files left by a crash are inserted at the next start, under the
 * same deduplication token, so a batch inserted just before the crash is not inserted twice.
 *
 * The size is shared between threads through a counter in KiB (Atomics on an Int32Array); when a write
 * would pass the limit it is refused and the caller counts the records as dropped.
 */
export const SPOOL_FORMAT = 'v1';
const NAME = /^flows-v1-(\d{13})-(\d{8})-(\d+)\.rb$/;

export interface SpoolFile {
  readonly path: string;
  readonly name: string;
  readonly rows: number;
  readonly bytes: number;
  /**
   * The earliest receive time of its rows (epoch ms); 0 when unknown (files recovered after a
   * restart), which holds detector windows back until the file is in the store.
   */
  readonly minReceivedMs: number;
}

export class Spool {
  private serial = 0;

  /** Called with the KiB freed by release() and reject() (the service tells the collector). */
  onRelease: ((kib: number) => void) | null = null;

  constructor(
    readonly dir: string,
    private readonly maxBytes: number,
    /** Shared spool size in KiB (index 0); a private counter when the spool has a single user. */
    readonly sizeKiB: Int32Array = new Int32Array(new SharedArrayBuffer(4)),
    /** Distinguishes writers sharing the directory (decoder worker index, or a process id). */
    private readonly writerId: number = process.pid,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  /** Counts a file another process wrote (the collector's decoders) until it is released. */
  adopt(file: SpoolFile): void {
    Atomics.add(this.sizeKiB, 0, Math.ceil(file.bytes / 1024));
  }

  get bytes(): number {
    return Atomics.load(this.sizeKiB, 0) * 1024;
  }

  /** Writes one chunk; returns null (nothing written) when the spool is full. */
  write(bytes: Uint8Array, rows: number, nowMs = Date.now(), minReceivedMs = 0): SpoolFile | null {
    const kib = Math.ceil(bytes.byteLength / 1024);
    if ((Atomics.load(this.sizeKiB, 0) + kib) * 1024 > this.maxBytes) return null;
    Atomics.add(this.sizeKiB, 0, kib);
    const name = `flows-${SPOOL_FORMAT}-${String(nowMs).padStart(13, '0')}-${String(++this.serial % 1e8).padStart(8, '0')}-${this.writerId}.rb`;
    const path = join(this.dir, name);
    const tmp = `${path}.tmp`;
    try {
      const fd = openSync(tmp, 'w');
      try {
        let off = 0;
        while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
    } catch (error) {
      // Disk full or gone: give the reservation back and leave no partial file behind.
      Atomics.sub(this.sizeKiB, 0, kib);
      rmSync(tmp, { force: true });
      throw error;
    }
    return {
      path,
      name,
      rows,
      bytes: bytes.byteLength,
      minReceivedMs: Number.isFinite(minReceivedMs) ? minReceivedMs : 0,
    };
  }

  /** Removes a file the store now holds. */
  release(file: SpoolFile): void {
    try {
      unlinkSync(file.path);
    } catch {
      // Already gone: nothing to release twice.
      return;
    }
    this.freed(file);
  }

  private freed(file: SpoolFile): void {
    const kib = Math.ceil(file.bytes / 1024);
    Atomics.sub(this.sizeKiB, 0, kib);
    this.onRelease?.(kib);
  }

  /** Moves a file the store refused as malformed out of the way (kept for inspection). */
  reject(file: SpoolFile): void {
    const dir = join(this.dir, 'rejected');
    mkdirSync(dir, { recursive: true });
    renameSync(file.path, join(dir, file.name));
    this.freed(file);
  }

  /**
   * Files left from an earlier run, oldest first; incomplete .tmp files are deleted. Their size is
   * added to the shared counter.
   */
  recover(): { files: SpoolFile[]; discarded: number } {
    const files: SpoolFile[] = [];
    let discarded = 0;
    for (const name of readdirSync(this.dir)) {
      const path = join(this.dir, name);
      if (name.endsWith('.rb.tmp')) {
        unlinkSync(path);
        discarded++;
        continue;
      }
      if (!NAME.test(name)) continue;
      const bytes = statSync(path).size;
      files.push({ path, name, bytes, rows: Math.floor(bytes / MAX_ROW_BYTES), minReceivedMs: 0 });
    }
    files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const f of files) Atomics.add(this.sizeKiB, 0, Math.ceil(f.bytes / 1024));
    return { files, discarded };
  }
}
