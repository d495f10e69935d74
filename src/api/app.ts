import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  LogController,
} from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Registry } from 'prom-client';
import type { Logger } from '../common/logger.js';
import { type Config, configSchema } from '../config/schema.js';
import type { DetectionEngine } from '../detect/engine.js';
import type { RunLog } from '../detect/runs.js';
import type { Scheduler } from '../detect/scheduler.js';
import type { DetectorSettingsStore } from '../detect/settings.js';
import type { AllowlistStore } from '../findings/allowlist.js';
import type { FindingStore } from '../findings/store.js';
import type { Store } from '../storage/clickhouse.js';
import type { FlowWriterStats } from '../storage/flow-writer.js';
import { allowlistRoutes } from './allowlist.js';
import { attackRoutes } from './attack.js';
import { rateLimitKey, requireToken, TokenRegistry } from './auth.js';
import { detectorsRoutes } from './detectors.js';
import { frameworkErrors, installErrorHandler, redactor } from './errors.js';
import { exportersRoutes } from './exporters.js';
import { findingsRoutes } from './findings.js';
import { flowsRoutes } from './flows.js';
import { registerApiMetrics } from './metrics.js';
import { type SiemDeps, siemRoutes } from './siem.js';
import { type CollectorView, healthRoutes, metricsRoutes, type SystemDeps, systemRoutes } from './system.js';

export type ApiSettings = Config['api'];

export interface ApiDeps {
  readonly store: Store;
  readonly collector: CollectorView;
  readonly metrics: Registry;
  readonly log: Logger;
  readonly version: string;
  /** The writer's queue and insert counters, and the spool's size on disk. */
  readonly storage: () => { writer: FlowWriterStats; spoolBytes: number };
  /** Detection: the findings, detector and ATT&CK endpoints (absent: they are not served). */
  readonly detection?: {
    readonly engine: DetectionEngine;
    readonly runs: RunLog;
    readonly findings: FindingStore;
    readonly allowlist: AllowlistStore;
    readonly settings: DetectorSettingsStore;
  };
  /** SIEM forwarding: GET /api/v1/siem (absent: an empty list). */
  readonly siem?: SiemDeps;
  /** Told when PATCH /api/v1/detectors/{id} changes a detector. */
  readonly scheduler?: Pick<Scheduler, 'refresh'> | undefined;
  /** The `api` section of the configuration (defaults when absent). */
  readonly api?: ApiSettings | undefined;
  /** Pings Redis for /readyz (when REDIS_URL is set). */
  readonly redis?: (() => Promise<void>) | undefined;
  /** Values never to be sent to a client (tokens are added here): ClickHouse and Redis passwords. */
  readonly secrets?: readonly string[] | undefined;
}

const DEFAULT_API: ApiSettings = configSchema.shape.api.parse(undefined);

/**
 * The HTTP API. Built from explicit dependencies so tests and the CLI assemble it the same way; each
 * resource's routes and schemas live in their own module, assembled here:
 *
 *   root: error handler, URL length limit, OpenAPI generator, rate limiter (not applied here),
 *         /healthz (public, not rate limited), /metrics (public unless api.metricsAuth),
 *         /docs and /openapi.json when api.docsAuth is false
 *   api scope: rate limit (onRequest) → bearer token (preParsing, before the body is read) → scope
 *         check (read-only tokens: GET only) → body limit → zod validation → handler; 404s too.
 */
export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  const settings = deps.api ?? DEFAULT_API;
  const tokens = new TokenRegistry(settings);
  const secrets = [settings.token, ...settings.tokens.map((t) => t.token), ...(deps.secrets ?? [])];
  const redact = redactor(secrets);
  const app = Fastify({
    loggerInstance: deps.log.child({ component: 'api' }) as FastifyBaseLogger,
    // Request logs would be one line per scrape and per dashboard refresh; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: settings.bodyLimitBytes,
    routerOptions: { maxParamLength: 128 },
    frameworkErrors,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandler(app, secrets);
  app.decorateRequest('principal', null);

  const requests = registerApiMetrics(deps.metrics);
  app.addHook('onResponse', async (request, reply) => {
    requests.observe(
      request.routeOptions.url ?? 'none',
      request.method,
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });
  app.addHook('onRequest', async (request, reply) => {
    if (request.url.length > settings.maxUrlBytes) {
      return reply
        .code(414)
        .send({ error: 'uri_too_long', message: `request line longer than ${settings.maxUrlBytes} bytes` });
    }
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'flowsentry',
        version: deps.version,
        description:
          'Flows, findings, detectors and ATT&CK coverage of flowsentry. Errors: {"error": "<code>", "message": "...", "details"?: [...]}.',
      },
      components: tokens.enabled
        ? { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } }
        : {},
      ...(tokens.enabled ? { security: [{ bearerAuth: [] }] } : {}),
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(rateLimit, {
    global: false,
    max: settings.rateLimit.max,
    timeWindow: settings.rateLimit.windowSeconds * 1000,
    keyGenerator: rateLimitKey(tokens),
  });

  const api = app.withTypeProvider<ZodTypeProvider>();
  const system: SystemDeps = {
    store: deps.store,
    collector: deps.collector,
    metrics: deps.metrics,
    version: deps.version,
    storage: deps.storage,
    redis: deps.redis,
    redact,
  };
  const limits = { queryTimeoutSeconds: settings.queryTimeoutSeconds, maxRangeDays: settings.maxRangeDays };
  const metricsPublic = !tokens.enabled || !settings.metricsAuth;
  const docsPublic = !tokens.enabled || !settings.docsAuth;

  const docs: FastifyPluginAsync = async (scope) => {
    await scope.register(swaggerUi, { routePrefix: '/docs' });
    scope.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  };

  healthRoutes(api, system);
  if (metricsPublic) metricsRoutes(api, system, { public: true });
  if (docsPublic) await app.register(docs);

  const protectedRoutes: FastifyPluginAsync = async (scope) => {
    scope.addHook('onRequest', app.rateLimit());
    if (tokens.enabled) await requireToken(scope, tokens);
    scope.setNotFoundHandler((request, reply) =>
      reply
        .code(404)
        .send({ error: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
    );
    const routes = scope.withTypeProvider<ZodTypeProvider>();
    if (!metricsPublic) metricsRoutes(routes, system, { public: false });
    if (!docsPublic) await scope.register(docs);
    systemRoutes(routes, system);
    siemRoutes(routes, deps.siem);
    exportersRoutes(routes, { collector: deps.collector });
    flowsRoutes(routes, { store: deps.store, limits });
    if (deps.detection) {
      const { engine, runs, findings, allowlist, settings: detectorSettings } = deps.detection;
      findingsRoutes(routes, { store: deps.store, findings, allowlist, limits });
      allowlistRoutes(routes, { allowlist, findings });
      detectorsRoutes(routes, { engine, runs, settings: detectorSettings, scheduler: deps.scheduler });
      attackRoutes(routes, { store: deps.store, engine, queryTimeoutSeconds: settings.queryTimeoutSeconds });
    }
  };
  await app.register(protectedRoutes);

  return app;
}
