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

  /** Exports the traffic with softflowd and stores the flows; fails if the export lost any. */
  async load(
    traffic: TrafficBuilder,
    options: SoftflowdOptions & { exporter?: string } = {},
  ): Promise<Loaded> {
    const n = ++this.serial;
    const pcap = join(this.dir.path, `traffic-${n}.pcap`);
    const written = traffic.write(pcap);
    const { datagrams, output } = await exportWithSoftflowd(pcap, this.dir.path, options);
    const importer = new DatagramImporter(
      this.store,
      join(this.dir.path, `spool-${n}`),
      { maxRows: 100_000, maxInsertRows: 400_000, spoolMaxBytes: 1 << 30 },
      this.log,
    );
    for (const d of datagrams) importer.add(options.exporter ?? '192.0.2.250', d.payload, d.exportMs);
    const result = await importer.finish();
    const lost = importer.decoder.streams().reduce((s, x) => s + x.sequence_lost_records, 0);
    if (result.records === 0 || lost > 0 || result.stored !== result.records || result.decodeErrors > 0) {
      throw new Error(`export incomplete: ${JSON.stringify({ ...result, lost })}\n${output}`);
    }
    return {
      records: result.stored,
      firstMs: Math.floor(written.firstUs / 1000),
      lastMs: Math.ceil(written.lastUs / 1000),
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
