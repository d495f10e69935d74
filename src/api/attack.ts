import { z } from 'zod';
import {
  isTechniqueId,
  TACTICS,
  type TacticId,
  TECHNIQUES,
  type TechniqueId,
  techniqueUrl,
} from '../detect/attack.js';
import type { DetectionEngine } from '../detect/engine.js';
import { queryRows, type Store } from '../storage/clickhouse.js';
import { Conditions } from './flows.js';
import { commonErrors, isoTime, type ZodApp } from './types.js';

export interface AttackDeps {
  readonly store: Store;
  readonly engine: DetectionEngine;
  readonly queryTimeoutSeconds: number;
}

/**
 * The ATT&CK release the technique names in src/detect/attack.ts follow, and the Navigator layer
 * format written: layer format 4.5, which ATT&CK Navigator reads from version 4.9.0 on (5.x too).
 */
export const ATTACK_VERSION = '16';
export const NAVIGATOR_VERSION = '4.9.1';
export const LAYER_VERSION = '4.5';

/** ATT&CK's tactic short names (x_mitre_shortname): the name in lower case, words joined by '-'. */
export function tacticShortname(id: TacticId): string {
  return TACTICS[id].toLowerCase().replace(/[^a-z]+/g, '-');
}

const techniqueCoverage = z.object({
  id: z.string(),
  name: z.string(),
  url: z.string(),
  tactic_ids: z.array(z.string()),
  detectors: z.array(z.string()).describe('detectors that can report it'),
  covered: z.boolean().describe('at least one enabled detector reports it'),
  findings: z.number().describe('findings carrying it (in [from, to) when given)'),
  open_findings: z.number(),
  last_seen: z.string().nullable().describe('latest traffic of those findings'),
});

const coverageResponse = z
  .object({
    attack_version: z.literal(ATTACK_VERSION),
    domain: z.literal('enterprise-attack'),
    tactics: z.array(
      z.object({
        id: z.string(),
        name: z.string(),
        shortname: z.string(),
        techniques: z.number().describe('techniques of this tactic flowsentry reports'),
        findings: z.number(),
      }),
    ),
    techniques: z.array(techniqueCoverage),
  })
  .meta({ id: 'AttackCoverage' });

const metadata = z.object({ name: z.string(), value: z.string() });

/** An ATT&CK Navigator layer (format 4.5), the part of it flowsentry writes. */
export const navigatorLayer = z
  .object({
    name: z.string(),
    versions: z.object({
      attack: z.literal(ATTACK_VERSION),
      navigator: z.literal(NAVIGATOR_VERSION),
      layer: z.literal(LAYER_VERSION),
    }),
    domain: z.literal('enterprise-attack'),
    description: z.string(),
    sorting: z.number(),
    layout: z.object({
      layout: z.enum(['side', 'flat', 'mini']),
      aggregateFunction: z.enum(['average', 'min', 'max', 'sum']),
      showID: z.boolean(),
      showName: z.boolean(),
      showAggregateScores: z.boolean(),
      countUnscored: z.boolean(),
      expandedSubtechniques: z.enum(['none', 'all', 'annotated']),
    }),
    hideDisabled: z.boolean(),
    techniques: z.array(
      z.object({
        techniqueID: z.string(),
        tactic: z.string(),
        score: z.number(),
        color: z.string(),
        comment: z.string(),
        enabled: z.boolean(),
        metadata: z.array(metadata),
        links: z.array(z.object({ label: z.string(), url: z.string() })),
        showSubtechniques: z.boolean(),
      }),
    ),
    gradient: z.object({ colors: z.array(z.string()).min(2), minValue: z.number(), maxValue: z.number() }),
    legendItems: z.array(z.object({ label: z.string(), color: z.string() })),
    metadata: z.array(metadata),
    links: z.array(z.object({ label: z.string(), url: z.string() })),
    showTacticRowBackground: z.boolean(),
    tacticRowBackground: z.string(),
    selectTechniquesAcrossTactics: z.boolean(),
    selectSubtechniquesWithParent: z.boolean(),
    selectVisibleTechniques: z.boolean(),
  })
  .meta({ id: 'NavigatorLayer' });

type Coverage = z.infer<typeof coverageResponse>;
type Layer = z.infer<typeof navigatorLayer>;

const attackQuery = z
  .strictObject({
    from: isoTime.optional().describe('count findings whose traffic overlaps [from, to)'),
    to: isoTime.optional(),
    format: z.enum(['json', 'navigator']).default('json').describe('navigator: an ATT&CK Navigator layer'),
  })
  .refine((q) => !(q.from && q.to && Date.parse(q.from) >= Date.parse(q.to)), {
    message: '`from` must be before `to`',
    path: ['to'],
  });

async function coverage(deps: AttackDeps, from?: string, to?: string): Promise<Coverage> {
  const c = new Conditions();
  if (from) c.add(`last_seen >= fromUnixTimestamp64Milli(${c.param('Int64', Date.parse(from))}, 'UTC')`);
  if (to) c.add(`first_seen < fromUnixTimestamp64Milli(${c.param('Int64', Date.parse(to))}, 'UTC')`);
  // Aliases differ from column names: an alias named like a column would replace it in WHERE.
  const rows = await queryRows<{ t: string; n: number; open: number; last: string }>(
    deps.store,
    `SELECT t, count() AS n, countIf(status = 'open') AS open, max(last_seen) AS last
     FROM findings FINAL ARRAY JOIN technique_ids AS t
     ${c.sql()}
     GROUP BY t`,
    c.params,
    { readonly: true, timeoutSeconds: deps.queryTimeoutSeconds },
  );
  const counts = new Map(rows.map((r) => [r.t, r]));
  const detectors = new Map<string, { all: string[]; enabled: boolean }>();
  for (const d of deps.engine.detectors.values()) {
    for (const t of d.definition.techniques) {
      const entry = detectors.get(t) ?? { all: [], enabled: false };
      entry.all.push(d.definition.id);
      entry.enabled ||= d.enabled;
      detectors.set(t, entry);
    }
  }
  const ids = [...new Set([...detectors.keys(), ...counts.keys()])].filter(isTechniqueId).sort();
  const techniques = ids.map((id: TechniqueId) => {
    const n = counts.get(id);
    return {
      id,
      name: TECHNIQUES[id].name,
      url: techniqueUrl(id),
      tactic_ids: [...TECHNIQUES[id].tactics],
      detectors: detectors.get(id)?.all ?? [],
      covered: detectors.get(id)?.enabled ?? false,
      findings: Number(n?.n ?? 0),
      open_findings: Number(n?.open ?? 0),
      last_seen: n ? new Date(Date.parse(n.last)).toISOString() : null,
    };
  });
  const tactics = (Object.keys(TACTICS) as TacticId[]).map((id) => {
    const under = techniques.filter((t) => (t.tactic_ids as string[]).includes(id));
    return {
      id,
      name: TACTICS[id],
      shortname: tacticShortname(id),
      techniques: under.filter((t) => t.detectors.length > 0).length,
      findings: under.reduce((s, t) => s + t.findings, 0),
    };
  });
  return { attack_version: ATTACK_VERSION, domain: 'enterprise-attack', tactics, techniques };
}

/** Colours: covered without findings (light green) → some (yellow) → the most findings (red). */
const GRADIENT = ['#d9f2d9', '#ffe766', '#ff6666'];
const NOT_COVERED = '#e0e0e0';

export function toNavigatorLayer(c: Coverage, window: { from?: string; to?: string }): Layer {
  const max = Math.max(1, ...c.techniques.map((t) => t.findings));
  const span =
    window.from || window.to
      ? ` between ${window.from ?? 'the first finding'} and ${window.to ?? 'now'}`
      : '';
  return {
    name: 'flowsentry coverage',
    versions: { attack: ATTACK_VERSION, navigator: NAVIGATOR_VERSION, layer: LAYER_VERSION },
    domain: 'enterprise-attack',
    description: `Techniques flowsentry's detectors report, scored by the number of findings${span}.`,
    sorting: 3,
    layout: {
      layout: 'side',
      aggregateFunction: 'sum',
      showID: true,
      showName: true,
      showAggregateScores: false,
      countUnscored: false,
      expandedSubtechniques: 'annotated',
    },
    hideDisabled: false,
    techniques: c.techniques.flatMap((t) =>
      t.tactic_ids.map((tactic) => ({
        techniqueID: t.id,
        tactic: tacticShortname(tactic as TacticId),
        score: t.findings,
        // Techniques with findings whose detectors are all disabled keep their score but are greyed.
        color: t.covered || t.findings > 0 ? '' : NOT_COVERED,
        comment: `${t.findings} finding${t.findings === 1 ? '' : 's'} (${t.open_findings} open)${
          t.detectors.length > 0 ? `; detectors: ${t.detectors.join(', ')}` : '; no current detector'
        }`,
        enabled: t.covered,
        metadata: [
          { name: 'findings', value: String(t.findings) },
          { name: 'open findings', value: String(t.open_findings) },
          { name: 'detectors', value: t.detectors.join(', ') || 'none' },
          ...(t.last_seen ? [{ name: 'last seen', value: t.last_seen }] : []),
        ],
        links: [{ label: 'ATT&CK', url: t.url }],
        showSubtechniques: false,
      })),
    ),
    gradient: { colors: GRADIENT, minValue: 0, maxValue: max },
    legendItems: [
      { label: 'covered, no findings', color: GRADIENT[0]! },
      { label: `most findings (${max})`, color: GRADIENT[2]! },
      { label: 'detector disabled', color: NOT_COVERED },
    ],
    metadata: [
      { name: 'generated by', value: 'flowsentry' },
      { name: 'generated at', value: new Date().toISOString() },
    ],
    links: [],
    showTacticRowBackground: false,
    tacticRowBackground: '#dddddd',
    selectTechniquesAcrossTactics: true,
    selectSubtechniquesWithParent: false,
    selectVisibleTechniques: false,
  };
}

export function attackRoutes(app: ZodApp, deps: AttackDeps): void {
  app.get(
    '/api/v1/attack',
    {
      schema: {
        summary: 'ATT&CK techniques flowsentry covers, with finding counts (or a Navigator layer)',
        tags: ['attack'],
        querystring: attackQuery,
        response: { 200: z.union([coverageResponse, navigatorLayer]), ...commonErrors },
      },
    },
    async (request) => {
      const { from, to, format } = request.query;
      const c = await coverage(deps, from, to);
      return format === 'navigator'
        ? toNavigatorLayer(c, { ...(from ? { from } : {}), ...(to ? { to } : {}) })
        : c;
    },
  );

  app.get(
    '/api/v1/attack/navigator',
    {
      schema: {
        summary: `ATT&CK Navigator layer (format ${LAYER_VERSION}, ATT&CK ${ATTACK_VERSION}) coloured by finding counts`,
        tags: ['attack'],
        querystring: z
          .strictObject({ from: isoTime.optional(), to: isoTime.optional() })
          .refine((q) => !(q.from && q.to && Date.parse(q.from) >= Date.parse(q.to)), {
            message: '`from` must be before `to`',
            path: ['to'],
          }),
        response: { 200: navigatorLayer, ...commonErrors },
      },
    },
    async (request, reply) => {
      const { from, to } = request.query;
      reply.header('content-disposition', 'attachment; filename="flowsentry-layer.json"');
      return toNavigatorLayer(await coverage(deps, from, to), {
        ...(from ? { from } : {}),
        ...(to ? { to } : {}),
      });
    },
  );
}
