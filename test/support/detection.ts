import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../src/common/logger.js';
import { type Config, configSchema } from '../../src/config/schema.js';
import type { Decoder } from '../../src/decoder/index.js';
import type { DetectorDefinition } from '../../src/detect/detector.js';
import { createDetection, type Detection } from '../../src/detect/index.js';
import type { Finding } from '../../src/findings/model.js';
import { FINDING_COLUMNS, rowToFinding } from '../../src/findings/store.js';
import { openStore, queryRows, type Store } from '../../src/storage/clickhouse.js';
import { DatagramImporter } from '../../src/storage/importer.js';
import { migrate } from '../../src/storage/migrate.js';
import type { TrafficBuilder } from './packets.js';
import { exportWithSoftflowd, type SoftflowdOptions } from './softflowd.js';
import { tempDir } from './temp.js';

export interface Loaded {
  /** Flow records stored. */
  readonly records: number;
  /** Capture times of the first and last packet (epoch ms). */
  readonly firstMs: number;
  readonly lastMs: number;
  /** The decoder that read the export (its streams, templates and counters, as the collector's). */
  readonly decoder: Decoder;
}

/**
 * Detector tests through the real pipeline: scripted packets → pcap → softflowd (a real exporter)
 * → the collector's decoder → the RowBinary spool → the embedded ClickHouse; then the detection
 * engine over that store. Flows are stored with the export time as their receive time, as a
 * collector next to the exporter would see them, so scheduled windows over those times and
 * backfills over the traffic times both work on the same data.
 */
export class DetectionHarness {
  private serial = 0;
  readonly log = silentLogger();

  private constructor(
    readonly dir: { path: string; remove: () => void },
    readonly store: Store,
  ) {}

  static async open(): Promise<DetectionHarness> {
    const dir = tempDir('flowsentry-detect-');
    const store = await openStore(
      { url: '', user: 'default', password: '', database: 'flowsentry' },
      dir.path,
    );
    await migrate(store, silentLogger());
    return new DetectionHarness(dir, store);
  }

  /**
   * Exports the traffic with softflowd and stores the flows; fails if the export lost any.
   *
   * softflowd reading a file expires nothing until the file ends, so by default every flow is exported
   * (and received) at the end of the capture. With `segmentSeconds`, the capture is cut into slices of
   * that length, each exported by its own softflowd run and received at its end: every record then
   * covers at most one slice, and a long connection arrives as one record per slice, as from a router
   * whose active timeout is that long.
   */
  async load(
    traffic: TrafficBuilder,
    options: SoftflowdOptions & { exporter?: string; segmentSeconds?: number } = {},
  ): Promise<Loaded> {
    const n = ++this.serial;
    const importer = new DatagramImporter(
      this.store,
      join(this.dir.path, `spool-${n}`),
      { maxRows: 100_000, maxInsertRows: 400_000, spoolMaxBytes: 1 << 30 },
      this.log,
    );
    const span = traffic.span;
    const slices: Array<{ fromUs: number; toUs: number } | undefined> = [];
    if (options.segmentSeconds) {
      const step = options.segmentSeconds * 1e6;
      for (let from = Math.floor(span.firstUs / step) * step; from <= span.lastUs; from += step) {
        slices.push({ fromUs: from, toUs: from + step });
      }
    } else {
      slices.push(undefined);
    }
    let outputs = '';
    // softflowd prints how many records it sent; comparing with what was decoded catches datagrams lost
    // on the way (sequence numbers restart with every run of a sliced load, so they cannot).
    let exported = 0;
    for (const [i, slice] of slices.entries()) {
      const pcap = join(this.dir.path, `traffic-${n}-${i}.pcap`);
      const written = traffic.write(pcap, slice);
      if (written.packets === 0) continue;
      const { datagrams, output } = await exportWithSoftflowd(pcap, this.dir.path, options);
      outputs = output;
      exported += Number(/Flows exported: \d+ \((\d+) records\)/.exec(output)?.[1] ?? Number.NaN);
      for (const d of datagrams) {
        // A slice is received when it ends (its export happens then), not at its last packet.
        const received = slice ? Math.max(d.exportMs, Math.floor(slice.toUs / 1000)) : d.exportMs;
        importer.add(options.exporter ?? '192.0.2.250', d.payload, received);
      }
      rmSync(pcap, { force: true });
    }
    const result = await importer.finish();
    const lost =
      slices.length > 1 ? 0 : importer.decoder.streams().reduce((s, x) => s + x.sequence_lost_records, 0);
    if (
      result.records === 0 ||
      lost > 0 ||
      (Number.isFinite(exported) && exported !== result.records) ||
      result.stored !== result.records ||
      result.decodeErrors > 0
    ) {
      throw new Error(`export incomplete: ${JSON.stringify({ ...result, lost, exported })}\n${outputs}`);
    }
    return {
      records: result.stored,
      firstMs: Math.floor(span.firstUs / 1000),
      lastMs: Math.ceil(span.lastUs / 1000),
      decoder: importer.decoder,
    };
  }

  /** A configuration with detection settings (the rest defaults). */
  config(detection: Record<string, unknown> = {}): Config {
    return configSchema.parse({ dataDir: this.dir.path, detection });
  }

  detection(detection: Record<string, unknown> = {}, definitions?: readonly DetectorDefinition[]): Detection {
    return createDetection(this.config(detection), this.store, this.log, definitions);
  }

  /** Every finding of a detector (all, if absent), oldest first. */
  async findings(detector?: string): Promise<Finding[]> {
    const rows = await queryRows<Parameters<typeof rowToFinding>[0]>(
      this.store,
      `SELECT ${FINDING_COLUMNS} FROM findings FINAL ${detector ? 'WHERE detector = {d:String}' : ''} ORDER BY first_seen, id`,
      detector ? { d: detector } : {},
    );
    return rows.map(rowToFinding);
  }

  async close(): Promise<void> {
    await this.store.close();
    this.dir.remove();
  }
}

/** An epoch-µs time base for test traffic: whole minutes in the past, inside any retention. */
export function trafficBase(minutesAgo = 120): number {
  return Math.floor(Date.now() / 60_000 - minutesAgo) * 60_000 * 1000;
}
