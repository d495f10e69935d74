import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  LogController,
} from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { CollectorSnapshot, ListenerStatus } from '../collector/collector.js';
import { isFlowsentryError } from '../common/errors.js';
import { canonicalAddress } from '../common/ip.js';
import type { Logger } from '../common/logger.js';
import type { DetectionEngine } from '../detect/engine.js';
import type { RunLog } from '../detect/runs.js';
import type { FindingStore } from '../findings/store.js';
import { queryRows, type Store } from '../storage/clickhouse.js';
import type { FlowWriterStats } from '../storage/flow-writer.js';
import { detectorsRoutes } from './detectors.js';
import { findingsRoutes } from './findings.js';
import { type SiemDeps, siemRoutes } from './siem.js';
import { ApiError, errorBody, isoTime } from './types.js';

export interface ApiDeps {
  readonly store: Store;
  readonly collector: {
    readonly listeners: readonly ListenerStatus[];
    snapshot(withTemplates?: boolean): Promise<CollectorSnapshot>;
  };
  readonly metrics: Registry;
  readonly log: Logger;
  readonly version: string;
  /** The writer's queue and insert counters, and the spool's size on disk. */
  readonly storage: () => { writer: FlowWriterStats; spoolBytes: number };
  /** Detection: the findings and detector endpoints (absent: they are not served). */
  readonly detection?: {
    readonly engine: DetectionEngine;
    readonly runs: RunLog;
    readonly findings: FindingStore;
  };
  /** SIEM forwarding: GET /api/v1/siem (absent: an empty list). */
  readonly siem?: SiemDeps;
}

/** Status of the project's own error codes when they reach the API (a coded error is never a 500). */
const CODE_STATUS: Partial<Record<string, [number, string]>> = {
  CONFIG_INVALID: [400, 'bad_request'],
  DETECTOR_UNKNOWN: [404, 'not_found'],
  FINDING_NOT_FOUND: [404, 'not_found'],
  RUN_CANCELLED: [409, 'cancelled'],
  STORAGE_UNAVAILABLE: [503, 'unavailable'],
  SCHEDULER_UNAVAILABLE: [503, 'unavailable'],
};

const summaryQuery = z
  .strictObject({
    from: isoTime,
    to: isoTime,
    exporter: z
      .string()
      .refine((s) => canonicalAddress(s) !== null, { message: 'expected an IPv4 or IPv6 address' })
      .optional(),
  })
  .refine((q) => !(Date.parse(q.from) >= Date.parse(q.to)), {
    message: '`from` must be before `to`',
    path: ['to'],
  });

const exporterItem = z.object({
  address: z.string(),
  version: z.number(),
  domain: z.number(),
  packets: z.number(),
  records: z.number(),
  option_records: z.number(),
  decode_errors: z.number(),
  missing_templates: z.number(),
  sequence_lost: z.number(),
  sequence_lost_records: z.number(),
  sequence_reordered: z.number(),
  sequence_resets: z.number(),
  templates: z.number(),
  sampling_rate_unknown: z.number(),
  sampling_unresolved: z.number(),
  pending_decoded_sets: z.number(),
  pending_dropped_sets: z.number(),
  time_base_unknown: z.number(),
  packet_section_unreadable: z.number(),
  packet_section_not_ip: z.number(),
  first_seen: z.string(),
  last_seen: z.string(),
});

/**
 * The HTTP API: /healthz, /metrics, and /api/v1 (flows summary, exporters, templates, collector
 * status). Built from explicit dependencies so tests and the CLI assemble it the same way.
 */
export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log.child({ component: 'api' }) as FastifyBaseLogger,
    // Request logs would be one line per scrape and per dashboard refresh; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const details = error.validation.map((v) => {
        const field =
          v.instancePath.replace(/^\//, '').replace(/\//g, '.') ||
          (v.params as { issue?: { path?: unknown[] } })?.issue?.path?.join('.');
        return `${field ? `${field}: ` : ''}${v.message}`;
      });
      return reply.code(400).send({ error: 'bad_request', message: details.join('; ') });
    }
    if (error instanceof ApiError) {
      return reply.code(error.statusCode).send({ error: error.code, message: error.message });
    }
    if (isFlowsentryError(error)) {
      const [status, code] = CODE_STATUS[error.code] ?? [500, 'internal_error'];
      if (status >= 500) request.log.error({ err: error }, 'request failed');
      return reply.code(status).send({ error: code, message: error.message });
    }
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    return reply.code(status).send({
      error: status >= 500 ? 'internal_error' : 'bad_request',
      message: status >= 500 ? 'internal error; see the service log' : error.message,
    });
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send({ error: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );

  const api = app.withTypeProvider<ZodTypeProvider>();

  api.get('/healthz', async (_request, reply) => {
    let storage = 'ok';
    try {
      const ping = await deps.store.client.ping();
      if (!ping.success) storage = `unreachable: ${String(ping.error)}`;
    } catch (error) {
      storage = `unreachable: ${(error as Error).message}`;
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
  });

  api.get('/metrics', async (_request, reply) => {
    reply.header('content-type', deps.metrics.contentType);
    return deps.metrics.metrics();
  });

  api.get(
    '/api/v1/flows/summary',
    {
      schema: {
        querystring: summaryQuery,
        response: {
          200: z.object({ flows: z.number(), bytes: z.number(), packets: z.number() }),
          400: errorBody,
        },
      },
    },
    async (request) => {
      const { from, to, exporter } = request.query;
      const params: Record<string, unknown> = { from: Date.parse(from), to: Date.parse(to) };
      let filter = '';
      if (exporter !== undefined) {
        params.exporter = canonicalAddress(exporter);
        filter = 'AND exporter_address = toIPv6({exporter:String})';
      }
      const [row] = await queryRows<{ flows: number; bytes: number; packets: number }>(
        deps.store,
        `SELECT count() AS flows, sum(bytes) AS bytes, sum(packets) AS packets
         FROM flows
         WHERE flow_end >= fromUnixTimestamp64Milli({from:Int64}) AND flow_end < fromUnixTimestamp64Milli({to:Int64})
         ${filter}`,
        params,
      );
      return {
        flows: Number(row?.flows ?? 0),
        bytes: Number(row?.bytes ?? 0),
        packets: Number(row?.packets ?? 0),
      };
    },
  );

  api.get(
    '/api/v1/exporters',
    { schema: { response: { 200: z.object({ items: z.array(exporterItem) }) } } },
    async () => {
      const snapshot = await deps.collector.snapshot();
      const items = snapshot.streams
        .map(({ sequence_gaps: _g, ...s }) => s)
        .sort((a, b) => a.address.localeCompare(b.address) || a.version - b.version || a.domain - b.domain);
      return { items };
    },
  );

  api.get('/api/v1/templates', async () => {
    const snapshot = await deps.collector.snapshot(true);
    return { items: snapshot.templates ?? [] };
  });

  api.get('/api/v1/collector', async () => {
    const s = await deps.collector.snapshot();
    return {
      receive_thread: s.receiveThread && {
        tid: s.receiveThread.tid,
        requested_nice: s.receiveThread.requestedNice,
        nice: s.receiveThread.nice,
        ...(s.receiveThread.error !== undefined ? { error: s.receiveThread.error } : {}),
      },
      listeners: s.listeners,
      queue_bytes: s.queueBytes,
      queue_capacity_bytes: s.queueCapacityBytes,
      decoder: s.decoder,
      state: s.state,
      spool: s.spool,
      storage: deps.storage(),
    };
  });

  siemRoutes(api, deps.siem);
  if (deps.detection) {
    findingsRoutes(api, { store: deps.store, findings: deps.detection.findings });
    detectorsRoutes(api, { engine: deps.detection.engine, runs: deps.detection.runs });
  }

  return app;
}
