import type { Logger } from '../common/logger.js';
import { Decoder, type DecoderOptions } from '../decoder/index.js';
import type { Store } from './clickhouse.js';
import { FlowWriter } from './flow-writer.js';
import { RowBinaryEncoder } from './row-binary.js';
import { Spool } from './spool.js';

export interface ImportOptions {
  /** Rows per spool chunk. */
  readonly maxRows: number;
  /** Most rows per INSERT. */
  readonly maxInsertRows: number;
  readonly spoolMaxBytes: number;
  readonly decoder?: Partial<DecoderOptions>;
}

export interface ImportResult {
  readonly datagrams: number;
  readonly records: number;
  readonly stored: number;
  readonly dropped: number;
  readonly decodeErrors: number;
  readonly exporters: number;
}

/**
 * Decodes export datagrams offline into the store, through the same decoder, RowBinary spool and
 * writer as the live collector (`flowsentry import`, the tests' and benchmarks' loaders). Each
 * datagram brings its exporter address and the receive time to store.
 */
export class DatagramImporter {
  readonly decoder: Decoder;
  private readonly encoder: RowBinaryEncoder;
  private readonly spool: Spool;
  private readonly writer: FlowWriter;
  private dropped = 0;
  private datagrams = 0;
  /** Spool bytes above which add() should wait (two chunks below the limit). */
  private readonly highWater: number;

  constructor(store: Store, spoolDir: string, options: ImportOptions, log: Logger) {
    this.spool = new Spool(spoolDir, options.spoolMaxBytes);
    this.highWater = Math.max(0, options.spoolMaxBytes - 2 * (options.maxRows * 160 + 1024));
    this.writer = new FlowWriter(store, this.spool, log, { maxBatchBytes: options.maxInsertRows * 160 });
    this.writer.start();
    this.encoder = new RowBinaryEncoder(options.maxRows * 160, () => this.spoolChunk());
    this.decoder = new Decoder(this.encoder, options.decoder ?? {});
  }

  private spoolChunk(): void {
    const { bytes, rows, minReceivedMs } = this.encoder.take();
    if (rows === 0) return;
    const spooled = this.spool.write(bytes, rows, Date.now(), minReceivedMs);
    if (spooled) this.writer.enqueue(spooled);
    else this.dropped += rows;
  }

  /**
   * Resolves when the spool has room for the next chunks: a reader faster than the store waits here
   * instead of filling the spool and dropping records. Cheap when there is room (no await needed:
   * check `full` first).
   */
  get full(): boolean {
    return this.spool.bytes > this.highWater;
  }

  async room(): Promise<void> {
    while (this.full) await this.writer.drained();
  }

  /** Decodes one datagram; returns the records it held. */
  add(srcAddress: string, payload: Uint8Array, receivedMs: number): number {
    this.datagrams++;
    const before = this.decoder.counters.records;
    this.decoder.decode(this.decoder.exporter(srcAddress), payload, receivedMs);
    return this.decoder.counters.records - before;
  }

  /** Flushes the last chunk and waits until the store holds everything. */
  async finish(): Promise<ImportResult> {
    this.spoolChunk();
    await this.writer.drained();
    await this.writer.stop(false);
    const streams = this.decoder.streams();
    return {
      datagrams: this.datagrams,
      records: this.decoder.counters.records,
      stored: this.writer.stats.insertedRows,
      dropped: this.dropped,
      decodeErrors: streams.reduce((s, x) => s + x.decode_errors, 0),
      exporters: streams.filter((s) => s.version !== 0).length,
    };
  }
}
