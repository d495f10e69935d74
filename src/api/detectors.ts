import { z } from 'zod';
import { TECHNIQUES, type TechniqueId, tacticsOf } from '../detect/attack.js';
import type { DetectionEngine } from '../detect/engine.js';
import type { RunLog } from '../detect/runs.js';
import { SEVERITIES } from '../findings/model.js';
import { ApiError, errorBody, isoTime, type ZodApp } from './types.js';

export interface DetectorsDeps {
  readonly engine: DetectionEngine;
  readonly runs: RunLog;
}

const lastRun = z
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
  .nullable();

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

export async function describeDetectors(deps: DetectorsDeps): Promise<z.infer<typeof detectorItem>[]> {
  const last = await deps.runs.lastRuns();
  return [...deps.engine.detectors.values()].map((d) => {
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
      last_run: last.get(d.definition.id) ?? null,
    };
  });
}

export function detectorsRoutes(app: ZodApp, deps: DetectorsDeps): void {
  app.get(
    '/api/v1/detectors',
    { schema: { response: { 200: z.object({ items: z.array(detectorItem) }) } } },
    async () => ({ items: await describeDetectors(deps) }),
  );

  app.post(
    '/api/v1/detections/run',
    { schema: { body: runRequest, response: { 200: runResponse, 400: errorBody } } },
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
