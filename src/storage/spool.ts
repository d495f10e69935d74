import { createHash } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { MAX_ROW_BYTES } from './flow-columns.js';

/**
 * The spool: RowBinary chunks of decoded flows on disk between the decoders and the store. Decoders
 * write a file per chunk (written as .tmp, then renamed); the FlowWriter inserts files in name order and
 * deletes them once the store has them.
 *
 * Before each INSERT the writer records the batch in a manifest (`batch-<token>.json`: the token and
 * the files' names and sizes; written as .tmp, then renamed), and removes it after the files. At the
 * next start every manifest is replayed as recorded, with its token, whatever batching the new run
 * uses, so a batch the store took just before a crash is deduplicated instead of stored twice; a
 * manifest some of whose files are already gone was inserted (files go only after the INSERT) and
 * its remaining files are deleted. Files in no manifest were never inserted and are batched anew.
 *
 * The size is shared between threads through a counter in KiB (Atomics on an Int32Array); when a write
 * would pass the limit it is refused and the caller counts the records as dropped.
 */
export const SPOOL_FORMAT = 'v1';
const NAME = /^flows-v1-(\d{13})-(\d{8})-(\d+)\.rb$/;
const MANIFEST = /^batch-([0-9a-f]{32})\.json$/;

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

/** A batch as the writer recorded it before its INSERT: replayed with the same files and token. */
export interface SpoolBatch {
  readonly token: string;
  readonly files: readonly SpoolFile[];
}

/** The deduplication token of a batch: a function of its files (names are unique, sizes fixed). */
export function batchToken(files: readonly SpoolFile[]): string {
  const hash = createHash('sha256');
  for (const f of files) hash.update(`${f.name}:${f.bytes}\n`);
  return hash.digest('hex').slice(0, 32);
}

export interface SpoolRecovery {
  /** Files in no manifest (never inserted), oldest first. */
  readonly files: SpoolFile[];
  /** Batches recorded before an INSERT whose outcome the crash hid, in the order they were recorded. */
  readonly batches: SpoolBatch[];
  /** Incomplete .tmp files deleted. */
  readonly discarded: number;
  /** Manifests found already inserted (some files deleted): their remaining files were deleted. */
  readonly completed: number;
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

  /** Records a batch before its INSERT (see the class comment). */
  recordBatch(batch: SpoolBatch): void {
    const path = join(this.dir, `batch-${batch.token}.json`);
    const tmp = `${path}.tmp`;
    const body = JSON.stringify({
      token: batch.token,
      recordedMs: Date.now(),
      files: batch.files.map((f) => ({ name: f.name, bytes: f.bytes, rows: f.rows })),
    });
    try {
      writeFileSync(tmp, body);
      renameSync(tmp, path);
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
  }

  /** Removes a batch's manifest once its files are released (or it was split). */
  forgetBatch(token: string): void {
    rmSync(join(this.dir, `batch-${token}.json`), { force: true });
  }

  /** Moves a file the store refused as malformed out of the way (kept for inspection). */
  reject(file: SpoolFile): void {
    const dir = join(this.dir, 'rejected');
    mkdirSync(dir, { recursive: true });
    renameSync(file.path, join(dir, file.name));
    this.freed(file);
  }

  /**
   * Files and recorded batches left from an earlier run (see the class comment); incomplete .tmp files
   * are deleted. The size of what is kept is added to the shared counter.
   */
  recover(): SpoolRecovery {
    const found = new Map<string, SpoolFile>();
    const manifests: Array<{ token: string; recordedMs: number; names: string[] }> = [];
    let discarded = 0;
    for (const name of readdirSync(this.dir)) {
      const path = join(this.dir, name);
      if (name.endsWith('.rb.tmp') || name.endsWith('.json.tmp')) {
        unlinkSync(path);
        discarded++;
        continue;
      }
      const manifest = MANIFEST.exec(name);
      if (manifest) {
        const parsed = readManifest(path);
        if (parsed && parsed.token === manifest[1]) manifests.push(parsed);
        else rmSync(path, { force: true });
        continue;
      }
      if (!NAME.test(name)) continue;
      const bytes = statSync(path).size;
      found.set(name, { path, name, bytes, rows: Math.floor(bytes / MAX_ROW_BYTES), minReceivedMs: 0 });
    }
    manifests.sort((a, b) => a.recordedMs - b.recordedMs);
    const batches: SpoolBatch[] = [];
    let completed = 0;
    for (const m of manifests) {
      const files = m.names.map((n) => found.get(n));
      for (const n of m.names) found.delete(n);
      const present = files.filter((f): f is SpoolFile => f !== undefined);
      if (present.length === files.length && present.length > 0) {
        batches.push({ token: m.token, files: present });
        continue;
      }
      // Deletion had begun, so the INSERT had succeeded: finish it.
      for (const f of present) unlinkSync(f.path);
      this.forgetBatch(m.token);
      completed++;
    }
    const files = [...found.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const f of [...files, ...batches.flatMap((b) => b.files)]) {
      Atomics.add(this.sizeKiB, 0, Math.ceil(f.bytes / 1024));
    }
    return { files, batches, discarded, completed };
  }
}

function readManifest(path: string): { token: string; recordedMs: number; names: string[] } | null {
  try {
    const m = JSON.parse(readFileSync(path, 'utf8')) as {
      token?: unknown;
      recordedMs?: unknown;
      files?: Array<{ name?: unknown }>;
    };
    if (typeof m.token !== 'string' || !Array.isArray(m.files)) return null;
    const names = m.files.map((f) => f.name);
    if (!names.every((n): n is string => typeof n === 'string' && NAME.test(n))) return null;
    return { token: m.token, recordedMs: typeof m.recordedMs === 'number' ? m.recordedMs : 0, names };
  } catch {
    // Unreadable: renamed into place only when complete, so this is not one of ours.
    return null;
  }
}
