import { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { CollectorSnapshot, ListenerStatus } from '../collector/collector.js';
import { errorMessage } from '../common/errors.js';
import { DECODE_ERRORS, DECODE_EVENTS, type TemplateSnapshot } from '../decoder/index.js';
import { queryRows, type Store } from '../storage/clickhouse.js';
import type { FlowWriterStats } from '../storage/flow-writer.js';
import { derivedFrom, errorBody, type ZodApp } from './types.js';

/** What the API reads from the collector (the Collector itself in the service; a stand-in in tests). */
export interface CollectorView {
  readonly listeners: readonly ListenerStatus[];
  snapshot(withTemplates?: boolean): Promise<CollectorSnapshot>;
}

export interface SystemDeps {
  readonly store: Store;
  readonly collector: CollectorView;
  readonly metrics: Registry;
  readonly version: string;
  /** The writer's queue and insert counters, and the spool's size on disk. */
  readonly storage: () => { writer: FlowWriterStats; spoolBytes: number };
  /** Pings Redis when REDIS_URL is configured (absent: Redis is not part of readiness). */
  readonly redis?: (() => Promise<void>) | undefined;
  /** Turns secrets in a text into *** (error texts reported by /readyz). */
  readonly redact: (text: string) => string;
}

const healthResponse = z.object({
  status: z.enum(['ok', 'degraded']),
  version: z.string(),
  storage: z.string().describe('"ok" or "unreachable: <why>"'),
  storage_engine: z.enum(['chdb', 'clickhouse-server']),
  listeners: z.array(z.object({ listen: z.string(), address: z.string(), port: z.number() })),
  uptime_seconds: z.number(),
});

const check = z.object({
  status: z.enum(['ok', 'error']),
  latency_ms: z.number(),
  error: z.string().optional(),
});

const readyResponse = z.object({
  status: z.enum(['ready', 'not_ready']),
  checks: z.object({
    storage: check,
    redis: check.optional().describe('only when REDIS_URL is configured'),
  }),
});

export const templateItem = derivedFrom<TemplateSnapshot>()(
  z.object({
    address: z.string(),
    version: z.number(),
    domain: z.number(),
    id: z.number(),
    kind: z.enum(['data', 'options']),
    scope_fields: z.number(),
    fields: z.array(z.object({ id: z.number(), enterprise: z.number(), length: z.number() })),
    unknown_fields: z.number(),
    last_used: z.string(),
  }),
);

type Listener = CollectorSnapshot['listeners'][number];

const listenerItem = derivedFrom<Listener>()(
  z.object({
    listen: z.string(),
    address: z.string(),
    port: z.number(),
    receiveBufferBytes: z.number(),
    packets: z.number(),
    bytes: z.number(),
    queue_dropped_packets: z.number(),
    queue_dropped_bytes: z.number(),
    kernel: z.object({ drops: z.number(), rxQueueBytes: z.number() }),
  }),
);

const writerStats = derivedFrom<FlowWriterStats>()(
  z.object({
    queuedFiles: z.number(),
    queuedRows: z.number(),
    queuedBytes: z.number(),
    insertedRows: z.number(),
    insertedBatches: z.number(),
    insertFailures: z.number(),
    rejectedFiles: z.number(),
    rejectedRows: z.number(),
    lastInsertMs: z.number(),
    lastInsertSeconds: z.number(),
    lastError: z.string().nullable(),
  }),
);

const threadNiceItem = z.object({ tid: z.number().nullable(), nice: z.number().nullable() });
const receiveThread = z.object({
  tid: z.number().nullable(),
  requested_nice: z.number(),
  nice: z.number(),
  error: z.string().exactOptional(),
});

/** The collector's status as /api/v1/collector answers it. */
export interface CollectorStatus {
  receive_thread: z.output<typeof receiveThread> | null;
  threads: CollectorSnapshot['threads'];
  listeners: Listener[];
  queue_bytes: number;
  queue_capacity_bytes: number;
  decoder: CollectorSnapshot['decoder'];
  state: CollectorSnapshot['state'];
  spool: CollectorSnapshot['spool'];
  storage: { writer: FlowWriterStats; spoolBytes: number };
}

const collectorResponse = derivedFrom<CollectorStatus>()(
  z.object({
    receive_thread: receiveThread
      .nullable()
      .describe('null unless collector.receiveNice is set: requested and actual nice, and why not'),
    threads: z
      .object({
        receive: threadNiceItem,
        decoders: z.array(threadNiceItem),
      })
      .describe('The ingest threads (Linux thread IDs) and the nice values they run at now'),
    listeners: z.array(listenerItem),
    queue_bytes: z.number(),
    queue_capacity_bytes: z.number(),
    decoder: z.record(z.enum([...DECODE_ERRORS, ...DECODE_EVENTS]), z.number()),
    state: derivedFrom<CollectorSnapshot['state']>()(
      z.object({
        exporters: z.number(),
        streams: z.number(),
        templates: z.number(),
        layouts: z.number(),
        pendingBytes: z.number(),
        compiled: z.number(),
      }),
    ),
    spool: derivedFrom<CollectorSnapshot['spool']>()(
      z.object({
        files: z.number(),
        records: z.number(),
        droppedRecords: z.number(),
        pendingRows: z.number(),
      }),
    ),
    storage: z.object({ writer: writerStats, spoolBytes: z.number() }),
  }),
);

/** Liveness (/healthz): the store answers a ping and the collector listens. Public, not rate limited. */
export function healthRoutes(app: ZodApp, deps: SystemDeps): void {
  app.get(
    '/healthz',
    {
      config: { rateLimit: false },
      schema: {
        summary: 'Liveness',
        tags: ['system'],
        security: [],
        response: { 200: healthResponse, 503: healthResponse },
      },
    },
    async (_request, reply) => {
      let storage = 'ok';
      try {
        const ping = await deps.store.client.ping();
        if (!ping.success) storage = `unreachable: ${deps.redact(String(ping.error))}`;
      } catch (error) {
        storage = `unreachable: ${deps.redact(errorMessage(error))}`;
      }
      const listeners = deps.collector.listeners;
      const ok = storage === 'ok' && listeners.length > 0;
      return reply.code(ok ? 200 : 503).send({
        status: ok ? 'ok' : 'degraded',
        version: deps.version,
        storage,
        storage_engine: deps.store.embedded ? 'chdb' : 'clickhouse-server',
        listeners: listeners.map((l) => ({ listen: l.listen, address: l.address, port: l.port })),
        uptime_seconds: Math.round(process.uptime()),
      });
    },
  );
}

/** Prometheus metrics (public unless api.metricsAuth). */
export function metricsRoutes(app: ZodApp, deps: SystemDeps, options: { public: boolean }): void {
  app.get(
    '/metrics',
    {
      ...(options.public ? { config: { rateLimit: false } } : {}),
      schema: {
        summary: 'Prometheus metrics',
        tags: ['system'],
        ...(options.public ? { security: [] } : {}),
        response: {
          200: {
            description: 'Prometheus text exposition format',
            content: { 'text/plain': { schema: z.string() } },
          },
        },
      },
    },
    async (_request, reply) => {
      reply.header('content-type', deps.metrics.contentType);
      return deps.metrics.metrics();
    },
  );
}

/**
 * A Redis check for /readyz: a fresh connection per call (readiness probes are infrequent), a PING,
 * then the connection is dropped; no retries, so an unreachable Redis answers within the timeout.
 */
export function redisPinger(url: string): () => Promise<void> {
  return async () => {
    const client = new Redis(url, {
      lazyConnect: true,
      connectTimeout: 2_000,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
    } finally {
      client.disconnect();
    }
  };
}

/** The password in a URL (redis://:pw@host), to keep it out of answers. */
export function urlPassword(url: string): string {
  try {
    return decodeURIComponent(new URL(url).password);
  } catch {
    return '';
  }
}

async function timed(work: () => Promise<void>, redact: (t: string) => string) {
  const started = performance.now();
  try {
    await Promise.race([
      work(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5_000).unref()),
    ]);
    return { status: 'ok' as const, latency_ms: Math.round(performance.now() - started) };
  } catch (error) {
    return {
      status: 'error' as const,
      latency_ms: Math.round(performance.now() - started),
      error: redact(errorMessage(error)),
    };
  }
}

/** Readiness, the collector's status and the templates held. */
export function systemRoutes(app: ZodApp, deps: SystemDeps): void {
  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: storage answers a query and, when REDIS_URL is set, Redis answers a ping',
        tags: ['system'],
        response: { 200: readyResponse, 503: readyResponse },
      },
    },
    async (_request, reply) => {
      const storage = await timed(async () => {
        await queryRows(deps.store, 'SELECT 1 AS ok', {}, { readonly: true, timeoutSeconds: 5 });
      }, deps.redact);
      const redis = deps.redis ? await timed(deps.redis, deps.redact) : undefined;
      const ready = storage.status === 'ok' && (redis === undefined || redis.status === 'ok');
      return reply.code(ready ? 200 : 503).send({
        status: ready ? 'ready' : 'not_ready',
        checks: { storage, ...(redis ? { redis } : {}) },
      });
    },
  );

  app.get(
    '/api/v1/templates',
    {
      schema: {
        summary: 'Every template held by the decoder',
        tags: ['collector'],
        response: { 200: z.object({ items: z.array(templateItem) }), 401: errorBody },
      },
    },
    async () => {
      const snapshot = await deps.collector.snapshot(true);
      return { items: snapshot.templates ?? [] };
    },
  );

  app.get(
    '/api/v1/collector',
    {
      schema: {
        summary: 'Collector status: listeners, queue, decoder counters, spool and writer',
        tags: ['collector'],
        response: { 200: collectorResponse, 401: errorBody },
      },
    },
    async (): Promise<CollectorStatus> => {
      const s = await deps.collector.snapshot();
      return {
        receive_thread: s.receiveThread && {
          tid: s.receiveThread.tid,
          requested_nice: s.receiveThread.requestedNice,
          nice: s.receiveThread.nice,
          ...(s.receiveThread.error !== undefined ? { error: s.receiveThread.error } : {}),
        },
        threads: s.threads,
        listeners: s.listeners,
        queue_bytes: s.queueBytes,
        queue_capacity_bytes: s.queueCapacityBytes,
        decoder: s.decoder,
        state: s.state,
        spool: s.spool,
        storage: deps.storage(),
      };
    },
  );
}
