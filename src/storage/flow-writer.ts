import { createReadStream } from 'node:fs';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ClickHouseSettings } from '@clickhouse/client';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Store } from './clickhouse.js';
import { FLOW_COLUMN_LIST, FLOW_ROWBINARY_STRUCTURE } from './flow-columns.js';
import { batchToken, type Spool, type SpoolBatch, type SpoolFile, type SpoolRecovery } from './spool.js';

export interface FlowWriterOptions {
  /** Most spool files inserted by one INSERT. */
  readonly maxBatchFiles: number;
  /** Most bytes inserted by one INSERT (rows are 160 bytes). */
  readonly maxBatchBytes: number;
  readonly retryMinMs: number;
  readonly retryMaxMs: number;
  /**
   * Test seam: awaited at the points where a crash matters (`inserted`: the store has the batch and
   * none of its files is deleted yet). A hook that never resolves leaves the disk as a crash would.
   */
  readonly crashPoint?: (point: 'inserted', files: readonly SpoolFile[]) => Promise<void> | void;
}

export const DEFAULT_FLOW_WRITER_OPTIONS: FlowWriterOptions = {
  maxBatchFiles: 32,
  maxBatchBytes: 400_000 * 160,
  retryMinMs: 200,
  retryMaxMs: 30_000,
};

export interface FlowWriterStats {
  queuedFiles: number;
  queuedRows: number;
  queuedBytes: number;
  insertedRows: number;
  insertedBatches: number;
  insertFailures: number;
  rejectedFiles: number;
  rejectedRows: number;
  lastInsertMs: number;
  lastInsertSeconds: number;
  lastError: string | null;
}

/** ClickHouse exception codes that mean the data itself is bad: retrying cannot help. */
const DATA_ERRORS = new Set([
  '27', // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  '33', // CANNOT_READ_ALL_DATA
  '36', // BAD_ARGUMENTS
  '41', // CANNOT_PARSE_DATETIME
  '69', // ARGUMENT_OUT_OF_BOUND
  '117', // INCORRECT_DATA
]);

/**
 * Inserts spool files into `flows` in arrival order, several per INSERT, and releases them once the
 * store has them. Embedded: INSERT … SELECT FROM file() over the files themselves (RowBinary read by the
 * engine, measured ~10x JSONEachRow; README, Architecture). Server: the files streamed as the body of
 * INSERT … FORMAT RowBinary.
 *
 * Each batch carries a deduplication token computed from its files and is recorded in a spool manifest
 * before its INSERT (src/storage/spool.ts); a failed batch is retried as the same batch, and one left
 * by a crash is replayed as recorded, so the store (non_replicated_deduplication_window on flows,
 * migrations/0001) drops the second copy whatever the batching after the restart. Failures are retried
 * with backoff; a batch the server rejects as malformed is split until the bad file is found and set
 * aside.
 */
export class FlowWriter {
  private readonly queue: SpoolFile[] = [];
  /** Batches recorded by an earlier run, replayed first and as they were. */
  private readonly recorded: SpoolBatch[] = [];
  /** A batch whose INSERT failed: tried again as it is, so its token still matches what the store saw. */
  private retry: SpoolBatch | null = null;
  private running = false;
  private stopping = false;
  private wake: (() => void) | null = null;
  private idleWaiters: Array<() => void> = [];
  private loop: Promise<void> | null = null;
  private busy = false;
  /** The files of the INSERT under way (they count for the horizon until the store has them). */
  private inFlight: SpoolFile[] = [];
  readonly stats: FlowWriterStats = {
    queuedFiles: 0,
    queuedRows: 0,
    queuedBytes: 0,
    insertedRows: 0,
    insertedBatches: 0,
    insertFailures: 0,
    rejectedFiles: 0,
    rejectedRows: 0,
    lastInsertMs: 0,
    lastInsertSeconds: 0,
    lastError: null,
  };
  private readonly options: FlowWriterOptions;
  /** Called after every successful insert (metrics). */
  onInsert: ((rows: number, seconds: number) => void) | null = null;

  constructor(
    private readonly store: Store,
    private readonly spool: Spool,
    private readonly log: Logger,
    options: Partial<FlowWriterOptions> = {},
  ) {
    this.options = { ...DEFAULT_FLOW_WRITER_OPTIONS, ...options };
  }

  enqueue(file: SpoolFile): void {
    this.queue.push(file);
    this.stats.queuedFiles++;
    this.stats.queuedRows += file.rows;
    this.stats.queuedBytes += file.bytes;
    this.wake?.();
  }

  /** Queues what Spool.recover() found: recorded batches as they were, then the loose files. */
  enqueueRecovered(recovery: SpoolRecovery): void {
    for (const batch of recovery.batches) {
      this.recorded.push(batch);
      for (const file of batch.files) {
        this.stats.queuedFiles++;
        this.stats.queuedRows += file.rows;
        this.stats.queuedBytes += file.bytes;
      }
    }
    for (const file of recovery.files) this.enqueue(file);
    this.wake?.();
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /**
   * Epoch ms before which every record this writer was given is in the store: the earliest receive
   * time among the files still queued or being inserted (`now` when there are none). Detector windows
   * do not end past it, so a slow or unreachable store holds them back instead of letting them run
   * over flows that have not arrived yet.
   */
  horizon(now = Date.now()): number {
    let oldest = now;
    for (const f of this.inFlight) oldest = Math.min(oldest, f.minReceivedMs);
    for (const f of this.queue) oldest = Math.min(oldest, f.minReceivedMs);
    for (const b of this.recorded) for (const f of b.files) oldest = Math.min(oldest, f.minReceivedMs);
    for (const f of this.retry?.files ?? []) oldest = Math.min(oldest, f.minReceivedMs);
    return oldest;
  }

  /** Resolves when everything enqueued so far is in the store (or set aside). */
  async drained(): Promise<void> {
    if (this.idle() && !this.busy) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops after the current batch; with `drain`, first inserts everything queued. */
  async stop(drain: boolean): Promise<void> {
    if (drain && this.running) await this.drained();
    this.stopping = true;
    this.wake?.();
    await this.loop;
    this.running = false;
  }

  private async run(): Promise<void> {
    let delay = this.options.retryMinMs;
    while (!this.stopping) {
      if (this.idle()) {
        for (const w of this.idleWaiters.splice(0)) w();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = null;
        continue;
      }
      const batch = this.retry ?? this.recorded.shift() ?? this.takeBatch();
      this.retry = null;
      this.busy = true;
      this.inFlight = [...batch.files];
      const again = await this.insertBatch(batch);
      this.inFlight = [];
      this.busy = false;
      if (again) {
        this.retry = again;
        await this.sleep(delay);
        delay = Math.min(delay * 2, this.options.retryMaxMs);
      } else {
        delay = this.options.retryMinMs;
      }
    }
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private idle(): boolean {
    return this.queue.length === 0 && this.recorded.length === 0 && this.retry === null;
  }

  private takeBatch(): SpoolBatch {
    const batch: SpoolFile[] = [];
    let bytes = 0;
    while (this.queue.length > 0 && batch.length < this.options.maxBatchFiles) {
      const next = this.queue[0]!;
      if (batch.length > 0 && bytes + next.bytes > this.options.maxBatchBytes) break;
      batch.push(this.queue.shift()!);
      bytes += next.bytes;
    }
    return { token: batchToken(batch), files: batch };
  }

  /** Inserts a batch; returns the batch to try again later (null when done). */
  private async insertBatch(batch: SpoolBatch): Promise<SpoolBatch | null> {
    const started = performance.now();
    const files = batch.files;
    try {
      this.spool.recordBatch(batch);
      await this.insert(files, batch.token);
    } catch (error) {
      this.stats.insertFailures++;
      this.stats.lastError = errorMessage(error);
      if (!isDataError(error)) {
        this.log.warn({ err: this.stats.lastError, files: files.length }, 'insert failed; will retry');
        return batch;
      }
      // The store refused the data, so it holds none of it: the parts go in under their own tokens.
      this.spool.forgetBatch(batch.token);
      if (files.length > 1) {
        // Find the bad file: insert them one by one.
        for (let i = 0; i < files.length; i++) {
          const single = [files[i]!];
          const again = await this.insertBatch({ token: batchToken(single), files: single });
          if (again) {
            this.queue.unshift(...files.slice(i + 1));
            return again;
          }
        }
        return null;
      }
      const file = files[0]!;
      this.log.error({ err: this.stats.lastError, file: file.name }, 'spool file rejected by the store');
      this.spool.reject(file);
      this.dequeued(file);
      this.stats.rejectedFiles++;
      this.stats.rejectedRows += file.rows;
      return null;
    }
    const seconds = (performance.now() - started) / 1000;
    await this.options.crashPoint?.('inserted', files);
    let rows = 0;
    for (const file of files) {
      rows += file.rows;
      this.spool.release(file);
      this.dequeued(file);
    }
    this.spool.forgetBatch(batch.token);
    this.stats.insertedRows += rows;
    this.stats.insertedBatches++;
    this.stats.lastInsertMs = Date.now();
    this.stats.lastInsertSeconds = seconds;
    this.stats.lastError = null;
    this.onInsert?.(rows, seconds);
    return null;
  }

  private dequeued(file: SpoolFile): void {
    this.stats.queuedFiles--;
    this.stats.queuedRows -= file.rows;
    this.stats.queuedBytes -= file.bytes;
  }

  private async insert(batch: readonly SpoolFile[], token: string): Promise<void> {
    if (this.store.embedded) {
      const names = batch.map((f) => f.name);
      const glob = names.length === 1 ? names[0]! : `{${names.join(',')}}`;
      // The settings go in the statement: the embedded connection would turn client settings into
      // SETs on its one session, and a deduplication token left there makes every later INSERT into
      // flows without a token of its own a silent duplicate.
      await this.store.client.command({
        query: `INSERT INTO flows (${FLOW_COLUMN_LIST}) SETTINGS insert_deduplication_token = ${sqlString(token)}, deduplicate_blocks_in_dependent_materialized_views = 1 SELECT * FROM file(${sqlString(`${this.spool.dir}/${glob}`)}, 'RowBinary', ${sqlString(FLOW_ROWBINARY_STRUCTURE)})`,
      });
      return;
    }
    // A server takes client settings per request (HTTP parameters), so they stay with this INSERT.
    const settings: ClickHouseSettings = {
      insert_deduplication_token: token,
      deduplicate_blocks_in_dependent_materialized_views: 1,
    };
    const body = new PassThrough({ highWaterMark: 1 << 20 });
    const feeding = (async () => {
      for (const file of batch) await pipeline(createReadStream(file.path), body, { end: false });
      body.end();
    })();
    const result = await this.store.client.exec({
      query: `INSERT INTO flows (${FLOW_COLUMN_LIST}) FORMAT RowBinary`,
      values: body,
      clickhouse_settings: settings,
    });
    result.stream.resume();
    await feeding;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

export function sqlString(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && DATA_ERRORS.has(code);
}
