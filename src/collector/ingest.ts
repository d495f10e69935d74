import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { FlowsentryError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { type ThreadNice, type ThreadPriority, threadNice } from '../common/thread-priority.js';
import type { Config } from '../config/index.js';
import type { DecoderCounters, StreamSnapshot, TemplateSnapshot } from '../decoder/index.js';
import type { SpoolFile } from '../storage/spool.js';
import type { DecoderMessage, DecoderSnapshot, DecoderWorkerData } from './decoder-worker.js';
import { readKernelUdpStats, type SocketQueueStats } from './kernel-drops.js';
import { createRingBuffer, RingReader } from './packet-ring.js';
import { createReceiverStats, type ReceiverField, readReceiverStats } from './receiver-stats.js';
import type { ReceiverMessage, ReceiverWorkerData } from './receiver-worker.js';

export interface ListenerStatus {
  readonly listen: string;
  readonly address: string;
  readonly port: number;
  /** What the kernel granted (Linux reports twice the usable size; capped by net.core.rmem_max). */
  readonly receiveBufferBytes: number;
}

export interface CollectorSnapshot {
  /** The receive thread's scheduling priority: what was asked for (collector.receiveNice) and got. */
  receiveThread: ThreadPriority | null;
  /** The ingest threads and the nice values they run at now: the receive thread first, decoders below it. */
  threads: { receive: ThreadNice; decoders: ThreadNice[] };
  listeners: Array<ListenerStatus & Record<ReceiverField, number> & { kernel: SocketQueueStats }>;
  queueBytes: number;
  queueCapacityBytes: number;
  decoder: DecoderCounters;
  streams: StreamSnapshot[];
  templates: TemplateSnapshot[] | null;
  /** The decoders' state, summed (Decoder['size']: layouts included). */
  state: {
    exporters: number;
    streams: number;
    templates: number;
    layouts: number;
    pendingBytes: number;
    compiled: number;
  };
  spool: { files: number; records: number; droppedRecords: number; pendingRows: number };
}

/** Decoder threads the collector starts. */
const DECODER_THREADS = 1;

/**
 * The ingest threads of the collector process: one receive thread owning every UDP socket, and one
 * decoder thread fed by a packet ring. The decoder writes spool files and reports them; `onSpooled`
 * passes them on to the service. (The ring list and the receive thread's choice of ring by source
 * address are written for several decoder threads, but the collector starts one: DECODER_THREADS.)
 *
 * Threads rather than processes inside the collector: the rings are shared memory (no copy, no
 * serialisation per packet), and Node 20 has no SO_REUSEPORT to spread one port over processes.
 */
export class Ingest {
  private receiver: Worker | null = null;
  private decoders: Worker[] = [];
  private rings: SharedArrayBuffer[] = [];
  private readonly receiverStats: SharedArrayBuffer;
  private listenerStatus: ListenerStatus[] = [];
  private receivePriority: ThreadPriority | null = null;
  private receiveTid: number | null = null;
  private decoderTids: Array<number | null> = [];
  private requests = new Map<number, (s: DecoderSnapshot) => void>();
  private nextRequest = 1;
  private stoppedDecoders: Array<Promise<void>> = [];

  constructor(
    private readonly config: Readonly<Config>,
    /** The spool directory and its size counter in KiB, shared with the decoder thread. */
    private readonly spool: { readonly dir: string; readonly sizeKiB: Int32Array },
    private readonly log: Logger,
    private readonly onSpooled: (file: SpoolFile) => void,
  ) {
    this.receiverStats = createReceiverStats(config.collector.listen.length);
  }

  get listeners(): readonly ListenerStatus[] {
    return this.listenerStatus;
  }

  async start(): Promise<void> {
    const c = this.config;
    for (let index = 0; index < DECODER_THREADS; index++) {
      const ring = createRingBuffer(Math.floor(c.collector.queueBytes / DECODER_THREADS));
      this.rings.push(ring);
      const workerData: DecoderWorkerData = {
        index,
        ring,
        spoolDir: this.spool.dir,
        spoolSizeKiB: this.spool.sizeKiB.buffer as SharedArrayBuffer,
        spoolMaxBytes: c.storage.spool.maxBytes,
        maxRows: c.storage.batch.maxRows,
        maxDelayMs: c.storage.batch.maxDelayMs,
        stateFile: join(c.dataDir, index === 0 ? 'templates.json' : `templates-${index}.json`),
        nice: c.collector.decoderNice,
        decoder: {
          compile: c.decoder.compile,
          templateTimeoutMs: c.decoder.templateTimeoutSeconds * 1000,
          pendingTimeoutMs: c.decoder.pendingTimeoutSeconds * 1000,
          pendingMaxBytes: c.decoder.pendingMaxBytes,
          maxExporters: c.decoder.maxExporters,
          maxTemplatesPerStream: c.decoder.maxTemplatesPerStream,
          maxTemplates: c.decoder.maxTemplates,
          maxRecordsPerPacket: c.decoder.maxRecordsPerPacket,
          allowedExporters: [...c.collector.allowedExporters],
          defaultSamplingRate: c.decoder.sampling.defaultRate,
          samplingOverrides: c.decoder.sampling.exporters.map((e) => ({ ...e })),
        },
      };
      const worker = new Worker(new URL('./decoder-worker.js', import.meta.url), { workerData });
      this.decoders.push(worker);
      await new Promise<void>((resolve, reject) => {
        let ready = false;
        let stopped: () => void = () => undefined;
        this.stoppedDecoders.push(new Promise<void>((r) => (stopped = r)));
        worker.on('message', (message: DecoderMessage) => {
          switch (message.type) {
            case 'ready':
              ready = true;
              this.decoderTids[index] = message.tid;
              if (message.restoredTemplates > 0)
                this.log.info({ decoder: index, templates: message.restoredTemplates }, 'templates restored');
              resolve();
              break;
            case 'spooled':
              this.onSpooled(message.file);
              break;
            case 'snapshot':
              this.requests.get(message.id)?.(message.snapshot);
              this.requests.delete(message.id);
              break;
            case 'log':
              this.log[message.level]({ decoder: index }, message.message);
              break;
            case 'stopped':
              stopped();
              break;
          }
        });
        worker.on('error', (error) => {
          this.log.error({ decoder: index, err: error }, 'decoder thread failed');
          if (!ready) reject(error);
        });
        worker.on('exit', () => stopped());
      });
    }

    const receiverData: ReceiverWorkerData = {
      listen: [...c.collector.listen],
      receiveBufferBytes: c.collector.receiveBufferBytes,
      receiveNice: c.collector.receiveNice,
      rings: this.rings,
      stats: this.receiverStats,
    };
    const receiver = new Worker(new URL('./receiver-worker.js', import.meta.url), {
      workerData: receiverData,
    });
    this.receiver = receiver;
    this.listenerStatus = await new Promise<ListenerStatus[]>((resolve, reject) => {
      receiver.on('message', (message: ReceiverMessage) => {
        if (message.type === 'listening') {
          this.receivePriority = message.priority;
          this.receiveTid = message.tid;
          resolve(message.listeners);
        } else if (message.type === 'error') {
          reject(
            new FlowsentryError('LISTEN_FAILED', `FLOWSENTRY_LISTEN_UDP: cannot listen: ${message.message}`),
          );
          this.log.error({ err: message.message }, 'receive socket error');
        }
      });
      receiver.on('error', reject);
    });
    for (const l of this.listenerStatus) {
      // Linux reports twice the requested size when it granted all of it.
      if (l.receiveBufferBytes < c.collector.receiveBufferBytes) {
        this.log.warn(
          { listen: l.listen, requested: c.collector.receiveBufferBytes, granted: l.receiveBufferBytes },
          'socket receive buffer capped by the kernel; raise it with: sysctl -w net.core.rmem_max=33554432',
        );
      }
    }
    const priority = this.receivePriority;
    if (priority?.error !== undefined) {
      this.log.warn(
        { requested: priority.requestedNice, nice: priority.nice, err: priority.error },
        'collector.receiveNice not applied (needs root, CAP_SYS_NICE or LimitNICE=); the receive thread ' +
          'stays at nice 0, level with other work on the box',
      );
    }
    this.log.info({ listeners: this.listenerStatus, receiveThread: priority }, 'collector listening');
  }

  async snapshot(withTemplates = false): Promise<CollectorSnapshot> {
    const parts = await Promise.all(
      this.decoders.map(
        (worker) =>
          new Promise<DecoderSnapshot>((resolve) => {
            const id = this.nextRequest++;
            this.requests.set(id, resolve);
            worker.postMessage({ type: 'snapshot', id, templates: withTemplates });
          }),
      ),
    );
    const sum = <T extends Record<string, number>>(items: T[]): T => {
      const out = {} as Record<string, number>;
      for (const item of items) for (const [k, v] of Object.entries(item)) out[k] = (out[k] ?? 0) + v;
      return out as T;
    };
    let queueBytes = 0;
    let queueCapacityBytes = 0;
    for (const ring of this.rings) {
      const reader = new RingReader(ring);
      queueBytes += reader.used;
      queueCapacityBytes += reader.capacity;
    }
    return {
      receiveThread: this.receivePriority,
      threads: {
        receive: threadNice(this.receiveTid),
        decoders: this.decoders.map((_, i) => threadNice(this.decoderTids[i] ?? null)),
      },
      listeners: this.listenerStatus.map((l, i) => ({
        ...l,
        ...readReceiverStats(this.receiverStats, i),
        kernel: readKernelUdpStats(l.port),
      })),
      queueBytes,
      queueCapacityBytes,
      decoder: sum(parts.map((p) => p.counters)),
      streams: parts.flatMap((p) => p.streams),
      templates: withTemplates ? parts.flatMap((p) => p.templates ?? []) : null,
      state: sum(parts.map((p) => p.size)),
      spool: sum(parts.map((p) => p.spool)),
    };
  }

  /** Closes the sockets, lets the decoders finish what is queued, flush and save their state. */
  async stop(): Promise<void> {
    if (this.receiver) {
      const receiver = this.receiver;
      await new Promise<void>((resolve) => {
        receiver.once('exit', () => resolve());
        receiver.on('message', (m: ReceiverMessage) => {
          if (m.type === 'stopped') resolve();
        });
        receiver.postMessage({ type: 'stop' });
      });
      await receiver.terminate();
      this.receiver = null;
    }
    for (const worker of this.decoders) worker.postMessage({ type: 'stop' });
    await Promise.all(this.stoppedDecoders);
    await Promise.all(this.decoders.map((w) => w.terminate()));
    this.decoders = [];
  }
}
