import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../common/errors.js';
import { createCidrMatcher } from '../common/ip.js';
import { currentThreadId, lowerThisThread } from '../common/thread-priority.js';
import {
  Decoder,
  type DecoderCounters,
  type DecoderOptions,
  type PersistedState,
  type StreamSnapshot,
  type TemplateSnapshot,
} from '../decoder/index.js';
import { RowBinaryEncoder } from '../storage/row-binary.js';
import { Spool, type SpoolFile } from '../storage/spool.js';
import { RingReader } from './packet-ring.js';

/**
 * A decoder thread: drains its ring, decodes every datagram, encodes rows as RowBinary and writes a
 * spool file when the chunk is full or `maxDelayMs` old. Owns the template state of the exporters
 * routed to it, persisted to `stateFile` so templates survive restarts.
 */
export interface DecoderWorkerData {
  index: number;
  ring: SharedArrayBuffer;
  spoolDir: string;
  spoolSizeKiB: SharedArrayBuffer;
  spoolMaxBytes: number;
  maxRows: number;
  maxDelayMs: number;
  stateFile: string;
  /** Nice value for this thread (the receive thread keeps the default); 0 leaves it. */
  nice: number;
  decoder: {
    compile: boolean;
    templateTimeoutMs: number;
    pendingTimeoutMs: number;
    pendingMaxBytes: number;
    maxExporters: number;
    maxTemplatesPerStream: number;
    maxTemplates: number;
    maxRecordsPerPacket: number;
    allowedExporters: string[];
    defaultSamplingRate: number;
    samplingOverrides: Array<{ prefix: string; rate: number; force: boolean }>;
  };
}

export interface DecoderSnapshot {
  counters: DecoderCounters;
  streams: StreamSnapshot[];
  templates: TemplateSnapshot[] | null;
  size: Decoder['size'];
  spool: { files: number; records: number; droppedRecords: number; pendingRows: number };
}

export type DecoderMessage =
  | { type: 'ready'; restoredTemplates: number; tid: number | null }
  | { type: 'spooled'; file: SpoolFile }
  | { type: 'snapshot'; id: number; snapshot: DecoderSnapshot }
  | { type: 'log'; level: 'warn' | 'error'; message: string }
  | { type: 'stopped' };

const data = workerData as DecoderWorkerData;
const port = parentPort!;
lowerThisThread(data.nice);
const reader = new RingReader(data.ring);
const spool = new Spool(
  data.spoolDir,
  data.spoolMaxBytes,
  new Int32Array(data.spoolSizeKiB),
  data.index * 1_000_000 + process.pid,
);
const encoder = new RowBinaryEncoder(Math.max(data.maxRows, 1000) * 160, () => flush());
const options: Partial<DecoderOptions> = {
  compile: data.decoder.compile,
  templateTimeoutMs: data.decoder.templateTimeoutMs,
  pendingTimeoutMs: data.decoder.pendingTimeoutMs,
  pendingMaxBytes: data.decoder.pendingMaxBytes,
  maxExporters: data.decoder.maxExporters,
  maxStreams: data.decoder.maxExporters * 4,
  maxTemplatesPerStream: data.decoder.maxTemplatesPerStream,
  maxTemplates: data.decoder.maxTemplates,
  maxRecordsPerPacket: data.decoder.maxRecordsPerPacket,
  allowedExporters:
    data.decoder.allowedExporters.length > 0 ? createCidrMatcher(data.decoder.allowedExporters) : null,
  defaultSamplingRate: data.decoder.defaultSamplingRate,
  samplingOverrides: data.decoder.samplingOverrides.map((o) => ({
    matcher: createCidrMatcher([o.prefix]),
    rate: o.rate,
    force: o.force,
  })),
};
const decoder = new Decoder(encoder, options);
const spoolStats = { files: 0, records: 0, droppedRecords: 0 };
let chunkStartedMs = 0;
let stopping = false;

function handle(
  payload: Uint8Array,
  address: Uint8Array,
  addressOffset: number,
  _port: number,
  receivedMs: number,
) {
  decoder.decode(decoder.exporterFor(address, addressOffset), payload, receivedMs);
  if (chunkStartedMs === 0 && encoder.rows > 0) chunkStartedMs = Date.now();
}

function flush(): void {
  chunkStartedMs = 0;
  if (encoder.rows === 0) return;
  const { bytes, rows, minReceivedMs } = encoder.take();
  let file: SpoolFile | null = null;
  try {
    file = spool.write(bytes, rows, Date.now(), minReceivedMs);
  } catch (error) {
    port.postMessage({ type: 'log', level: 'error', message: `spool write failed: ${errorMessage(error)}` });
  }
  if (file === null) {
    spoolStats.droppedRecords += rows;
    return;
  }
  spoolStats.files++;
  spoolStats.records += rows;
  port.postMessage({ type: 'spooled', file } satisfies DecoderMessage);
}

function saveState(): void {
  try {
    const tmp = `${data.stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(decoder.exportState(Date.now())));
    renameSync(tmp, data.stateFile);
  } catch (error) {
    port.postMessage({
      type: 'log',
      level: 'warn',
      message: `cannot save templates: ${errorMessage(error)}`,
    });
  }
}

function restoreState(): number {
  if (!existsSync(data.stateFile)) return 0;
  try {
    return decoder.importState(
      JSON.parse(readFileSync(data.stateFile, 'utf8')) as PersistedState,
      Date.now(),
    );
  } catch (error) {
    port.postMessage({
      type: 'log',
      level: 'warn',
      message: `ignoring unreadable ${data.stateFile}: ${errorMessage(error)}`,
    });
    return 0;
  }
}

async function run(): Promise<void> {
  const BATCH = 2048;
  let lastHousekeeping = Date.now();
  let lastSave = Date.now();
  for (;;) {
    const n = reader.read(handle, BATCH);
    const now = Date.now();
    if (chunkStartedMs !== 0 && now - chunkStartedMs >= data.maxDelayMs) flush();
    if (now - lastHousekeeping >= 5_000) {
      decoder.expire(now);
      lastHousekeeping = now;
    }
    if (now - lastSave >= 30_000) {
      saveState();
      lastSave = now;
    }
    if (n === BATCH) {
      // Let messages (snapshots, stop) through between batches.
      await new Promise<void>((resolve) => setImmediate(resolve));
      continue;
    }
    if (stopping && reader.used === 0) break;
    await reader.waitForData(
      chunkStartedMs !== 0 ? Math.max(1, data.maxDelayMs - (now - chunkStartedMs)) : 250,
    );
  }
  flush();
  saveState();
  port.postMessage({ type: 'stopped' } satisfies DecoderMessage);
  port.close();
}

port.on('message', (message: { type: string; id?: number; templates?: boolean }) => {
  if (message.type === 'stop') {
    stopping = true;
  } else if (message.type === 'snapshot') {
    const snapshot: DecoderSnapshot = {
      counters: { ...decoder.counters },
      streams: decoder.streams(),
      templates: message.templates ? decoder.templates() : null,
      size: decoder.size,
      spool: { ...spoolStats, pendingRows: encoder.rows },
    };
    port.postMessage({ type: 'snapshot', id: message.id ?? 0, snapshot } satisfies DecoderMessage);
  }
});

port.postMessage({
  type: 'ready',
  restoredTemplates: restoreState(),
  tid: currentThreadId(),
} satisfies DecoderMessage);
run().catch((error: unknown) => {
  port.postMessage({ type: 'log', level: 'error', message: `decoder stopped: ${errorMessage(error)}` });
  process.exit(1);
});
