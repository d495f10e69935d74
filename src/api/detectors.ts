import { z } from 'zod';
import { TECHNIQUES, type TechniqueId, tacticsOf } from '../detect/attack.js';
import type { ConfiguredDetector, DetectionEngine } from '../detect/engine.js';
import type { LastRun, RunLog } from '../detect/runs.js';
import type { Scheduler } from '../detect/scheduler.js';
import {
  type DetectorSettingsStore,
  mergeSettings,
  type StoredDetectorSettings,
  toEngineInput,
} from '../detect/settings.js';
import { SEVERITIES } from '../findings/model.js';
import { ApiError, commonErrors, derivedFrom, errorBody, isoTime, type ZodApp } from './types.js';

export interface DetectorsDeps {
  readonly engine: DetectionEngine;
  readonly runs: RunLog;
  /** Where PATCH keeps its changes (absent: PATCH is not served). */
  readonly settings?: DetectorSettingsStore | undefined;
  /** Told about every change (absent: nothing schedules detectors in this process). */
  readonly scheduler?: Pick<Scheduler, 'refresh'> | undefined;
}

const lastRun = derivedFrom<LastRun | null>()(
  z
    .object({
      run_id: z.string(),
      mode: z.enum(['scheduled', 'backfill']),
      window_from: z.string(),
      window_to: z.string(),
      finished_at: z.string(),
      duration_ms: z.number(),
      findings: z.number(),
      findings_created: z.number(),
      findings_updated: z.number(),
      error: z.string().nullable(),
    })
    .nullable(),
);

export const detectorItem = z.object({
  id: z.string(),
  title: z.string(),
  description: z.string(),
  technique_ids: z.array(z.string()),
  tactic_ids: z.array(z.string()),
  techniques: z.array(z.object({ id: z.string(), name: z.string() })),
  severity: z.enum(SEVERITIES),
  enabled: z.boolean(),
  interval_seconds: z.number(),
  lookback_seconds: z.number(),
  cooldown_seconds: z.number(),
  params: z.record(z.string(), z.unknown()),
  allowlist: z.object({ src: z.array(z.string()), dst: z.array(z.string()) }),
  false_positives: z.array(z.string()),
  last_run: lastRun,
});

/** Longest interval one backfill request may cover (longer investigations: several requests). */
export const MAX_BACKFILL_DAYS = 31;

export const runRequest = z
  .strictObject({
    from: isoTime,
    to: isoTime,
    detectors: z
      .array(z.string().regex(/^[a-z0-9-]{1,64}$/))
      .min(1)
      .optional(),
    forward: z.boolean().default(true).describe('false: the findings of this run are not sent to the SIEM'),
  })
  .refine((r) => Date.parse(r.from) < Date.parse(r.to), {
    message: '`from` must be before `to`',
    path: ['to'],
  })
  .refine((r) => Date.parse(r.to) - Date.parse(r.from) <= MAX_BACKFILL_DAYS * 86_400_000, {
    message: `at most ${MAX_BACKFILL_DAYS} days per run`,
    path: ['to'],
  });

export const runResponse = z.object({
  run_id: z.string(),
  findings_created: z.number(),
  findings_updated: z.number(),
  windows: z.number(),
  duration_ms: z.number(),
  detectors: z.array(
    z.object({
      id: z.string(),
      windows: z.number(),
      findings_created: z.number(),
      findings_updated: z.number(),
      duration_ms: z.number(),
      errors: z.array(z.string()),
    }),
  ),
});

export const detectorPatch = z
  .strictObject({
    enabled: z.boolean().optional(),
    interval_seconds: z.number().int().min(10).max(86_400).optional().describe('seconds between runs'),
    lookback_seconds: z
      .number()
      .int()
      .min(10)
      .max(7 * 86_400)
      .optional()
      .describe('traffic each run reads (at least the interval)'),
    cooldown_seconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 86_400)
      .optional()
      .describe('a pause longer than this opens a new finding'),
    params: z
      .record(z.string(), z.unknown())
      .optional()
      .describe("parameters to change (the others keep their value), validated by the detector's schema"),
  })
  .refine((b) => Object.keys(b).length > 0, { message: 'nothing to change' });

type DetectorItem = z.infer<typeof detectorItem>;

function describe(d: ConfiguredDetector, last: LastRun | null): DetectorItem {
  const techniques = [...d.definition.techniques] as TechniqueId[];
  return {
    id: d.definition.id,
    title: d.definition.title,
    description: d.definition.description,
    technique_ids: techniques,
    tactic_ids: tacticsOf(techniques),
    techniques: techniques.map((id) => ({ id, name: TECHNIQUES[id].name })),
    severity: d.definition.severity,
    enabled: d.enabled,
    interval_seconds: d.intervalSeconds,
    lookback_seconds: d.lookbackSeconds,
    cooldown_seconds: d.cooldownSeconds,
    params: d.params,
    allowlist: { src: [...d.allowlist.src.cidrs], dst: [...d.allowlist.dst.cidrs] },
    false_positives: [...d.definition.falsePositives],
    last_run: last,
  };
}

export async function describeDetectors(deps: DetectorsDeps): Promise<DetectorItem[]> {
  const last = await deps.runs.lastRuns();
  return [...deps.engine.detectors.values()].map((d) => describe(d, last.get(d.definition.id) ?? null));
}

export function detectorsRoutes(app: ZodApp, deps: DetectorsDeps): void {
  app.get(
    '/api/v1/detectors',
    {
      schema: {
        summary: 'Detectors: metadata, parameters, ATT&CK IDs, last run and its error',
        tags: ['detectors'],
        response: { 200: z.object({ items: z.array(detectorItem) }), ...commonErrors },
      },
    },
    async () => ({ items: await describeDetectors(deps) }),
  );

  const settings = deps.settings;
  if (settings) {
    // One change at a time: each reads the stored settings, applies and writes them back.
    let queue: Promise<unknown> = Promise.resolve();
    const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
      const next = queue.then(work, work);
      queue = next.catch(() => undefined);
      return next;
    };

    app.patch(
      '/api/v1/detectors/:id',
      {
        schema: {
          summary: 'Enable or disable a detector, change its interval, lookback, cool-down or parameters',
          description:
            "Validated by the detector's own parameter schema; kept in ClickHouse (applied over the configuration file at every start) and applied to the running scheduler at once.",
          tags: ['detectors'],
          params: z.strictObject({ id: z.string().regex(/^[a-z0-9-]{1,64}$/, 'expected a detector id') }),
          body: detectorPatch,
          response: { 200: detectorItem, 404: errorBody, ...commonErrors },
        },
      },
      async (request) => {
        const { id } = request.params;
        const d = deps.engine.detectors.get(id);
        if (!d) throw new ApiError(404, 'not_found', `no detector "${id}"`);
        const change = Object.fromEntries(
          Object.entries(request.body).filter(([, v]) => v !== undefined),
        ) as StoredDetectorSettings;
        if (change.params) {
          const parsed = d.definition.params.safeParse({ ...d.params, ...change.params });
          if (!parsed.success) {
            const details = parsed.error.issues.map(
              (i) => `${['params', ...i.path.map(String)].join('.')}: ${i.message}`,
            );
            throw new ApiError(400, 'bad_request', details.join('; '), details);
          }
        }
        const actor = request.principal?.name ?? 'anonymous';
        await exclusive(async () => {
          const before = {
            enabled: d.enabled,
            intervalSeconds: d.intervalSeconds,
            lookbackSeconds: d.lookbackSeconds,
            cooldownSeconds: d.cooldownSeconds,
            params: { ...d.params },
          };
          const stored = mergeSettings(await settings.get(id), change);
          deps.engine.reconfigure(id, toEngineInput(change), id);
          try {
            await settings.save(id, stored, actor);
          } catch (error) {
            // Not kept: the running engine goes back to what a restart would give.
            deps.engine.reconfigure(id, before, id);
            throw error;
          }
          request.log.info({ detector: id, actor, change: Object.keys(change) }, 'detector settings changed');
        });
        await deps.scheduler?.refresh(id);
        const last = await deps.runs.lastRuns();
        return describe(d, last.get(id) ?? null);
      },
    );
  }

  app.post(
    '/api/v1/detections/run',
    {
      schema: {
        summary: 'Run detectors over a past interval of traffic (a backfill)',
        tags: ['detectors'],
        body: runRequest,
        response: { 200: runResponse, 409: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const { from, to, detectors, forward } = request.body;
      for (const id of detectors ?? []) {
        if (!deps.engine.detectors.has(id))
          throw new ApiError(400, 'bad_request', `detectors: no detector "${id}"`);
      }
      const controller = new AbortController();
      // A client that gives up stops the run between windows.
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) controller.abort();
      });
      const result = await deps.engine.backfill({
        from: Date.parse(from),
        to: Date.parse(to),
        detectors,
        forward,
        signal: controller.signal,
      });
      return { ...result, detectors: result.detectors.map((d) => ({ ...d, errors: [...d.errors] })) };
    },
  );
}
