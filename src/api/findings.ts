import { z } from 'zod';
import { AddressSet } from '../detect/networks.js';
import { type AllowlistRule, type AllowlistStore, allowlistRuleSchema } from '../findings/allowlist.js';
import { type Finding, findingSchema, SEVERITIES, STATUSES } from '../findings/model.js';
import { FINDING_COLUMNS, type FindingEvent, type FindingStore, rowToFinding } from '../findings/store.js';
import { queryRows, type Store } from '../storage/clickhouse.js';
import { Conditions, columnAddress, flowPage, flowsPage, MAX_FLOW_PAGE, type QueryLimits } from './flows.js';
import {
  ApiError,
  commonErrors,
  csv,
  derivedFrom,
  errorBody,
  ipAddress,
  ipOrCidr,
  isoTime,
  type ZodApp,
} from './types.js';

export interface FindingsDeps {
  readonly store: Store;
  readonly findings: FindingStore;
  readonly allowlist: AllowlistStore;
  readonly limits: QueryLimits;
}

const SORTS = ['created_at', '-created_at', 'first_seen', '-first_seen', 'last_seen', '-last_seen'] as const;

const findingId = z.string().regex(/^[0-9a-f-]{36}$/, 'expected a finding id');

export const findingsQuery = z
  .strictObject({
    from: isoTime.optional().describe('findings whose traffic (first_seen..last_seen) overlaps [from, to)'),
    to: isoTime.optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    cursor: z.string().max(512).optional().describe('next_cursor of the previous page'),
    detector: csv(z.string().regex(/^[a-z0-9-]{1,64}$/, 'expected detector ids')).optional(),
    severity: z.enum(SEVERITIES).optional().describe('minimum severity'),
    status: csv(z.enum(STATUSES)).optional(),
    technique: z
      .string()
      .regex(/^T\d{4}(\.\d{3})?$/, 'expected an ATT&CK technique ID such as T1110 or T1110.001')
      .optional()
      .describe('technique prefix: T1110 matches T1110.001'),
    tactic: csv(z.string().regex(/^TA\d{4}$/, 'expected ATT&CK tactic IDs such as TA0007'))
      .optional()
      .describe('any of these tactics'),
    ip: ipOrCidr.optional().describe('address or CIDR matching src_ip, dst_ip or one of related_ips'),
    exporter: ipAddress.optional().describe('an exporter that reported the flows'),
    q: z.string().min(1).max(200).optional().describe('text in the title (case-insensitive)'),
    sort: z
      .enum(SORTS)
      .default('-created_at')
      .describe('created_at (default, newest first) is stable while findings are updated; last_seen moves'),
  })
  .refine((q) => !(q.from && q.to && Date.parse(q.from) >= Date.parse(q.to)), {
    message: '`from` must be before `to`',
    path: ['to'],
  });

export type FindingsQuery = z.infer<typeof findingsQuery>;

const finding = findingSchema.meta({ id: 'Finding' });

const findingsPage = z.object({ items: z.array(finding), next_cursor: z.string().nullable() });

export const findingEvent = derivedFrom<FindingEvent>()(
  z.object({
    at: z.string(),
    actor: z.string().describe("the token's name (with the body's user, if given), or the body's user"),
    action: z.string().describe('status, allowlist_rule_created or allowlist_rule_removed'),
    from_status: z.string().nullable(),
    to_status: z.string().nullable(),
    comment: z.string(),
    rule_id: z.string().nullable(),
  }),
);

/** A finding with its history and the allowlist rules its suppression made (GET and PATCH by id). */
export const findingDetail = derivedFrom<
  Finding & { history: FindingEvent[]; allowlist_rules: AllowlistRule[] }
>()(
  findingSchema
    .extend({
      history: z.array(findingEvent).describe('analyst actions, oldest first'),
      allowlist_rules: z.array(allowlistRuleSchema).describe('rules made by suppressing this finding'),
    })
    .meta({ id: 'FindingDetail' }),
);

const userName = z
  .string()
  .regex(/^[\w.@ -]{1,64}$/, 'letters, digits, spaces, _ . @ - (at most 64)')
  .describe('the acting user; with tokens it is recorded after the token name (token/user)');

export const findingPatch = z
  .strictObject({
    status: z.enum(STATUSES).describe('open reopens; suppressed can also create an allowlist rule'),
    comment: z.string().max(2000).default(''),
    user: userName.optional(),
    allowlist: z
      .strictObject({
        match: z
          .enum(['src', 'dst', 'pair'])
          .describe("src: the finding's source; dst: its destination; pair: both together"),
        detector: z.enum(['this', 'any']).default('this').describe('this detector only, or every detector'),
        src_cidr: ipOrCidr
          .optional()
          .describe("widen the source to this CIDR (it must contain the finding's src_ip)"),
        dst_cidr: ipOrCidr
          .optional()
          .describe("widen the destination (it must contain the finding's dst_ip)"),
        expires_at: isoTime.optional().describe('default: until removed'),
      })
      .optional()
      .describe(
        'with status suppressed: drop future observations of this activity before they become findings',
      ),
  })
  .refine((b) => b.allowlist === undefined || b.status === 'suppressed', {
    message: 'an allowlist rule comes only with status suppressed',
    path: ['allowlist'],
  });

interface Cursor {
  readonly sort: string;
  readonly at: number;
  readonly id: string;
}

function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.sort, c.at, c.id])).toString('base64url');
}

function decodeCursor(text: string, sort: string): Cursor {
  try {
    const [s, at, id] = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as [
      unknown,
      unknown,
      unknown,
    ];
    if (
      s === sort &&
      typeof at === 'number' &&
      Number.isFinite(at) &&
      typeof id === 'string' &&
      id.length <= 64
    ) {
      return { sort, at, id };
    }
  } catch {
    // Fall through.
  }
  throw new ApiError(
    400,
    'bad_request',
    'cursor: not a cursor of this query (pass next_cursor back with the same sort)',
  );
}

/**
 * The findings list. Every filter is a fixed SQL condition with query parameters; the cursor is the
 * sort value and id of the last item, so pages do not overlap or skip while new findings arrive
 * (with a sort on created_at or first_seen, which do not change as a finding is updated).
 */
export async function listFindings(
  store: Store,
  q: FindingsQuery,
  timeoutSeconds = 30,
): Promise<z.infer<typeof findingsPage>> {
  const c = new Conditions();
  if (q.from) c.add(`last_seen >= fromUnixTimestamp64Milli(${c.param('Int64', Date.parse(q.from))}, 'UTC')`);
  if (q.to) c.add(`first_seen < fromUnixTimestamp64Milli(${c.param('Int64', Date.parse(q.to))}, 'UTC')`);
  if (q.detector && q.detector.length > 0) c.add(`detector IN ${c.param('Array(String)', q.detector)}`);
  if (q.severity) c.add(`severity >= ${c.param('String', q.severity)}`);
  if (q.status && q.status.length > 0) c.add(`status IN ${c.param('Array(String)', q.status)}`);
  if (q.technique) {
    const t = c.param('String', q.technique);
    c.add(`arrayExists(t -> t = ${t} OR startsWith(t, concat(${t}, '.')), technique_ids)`);
  }
  if (q.tactic && q.tactic.length > 0) c.add(`hasAny(tactic_ids, ${c.param('Array(String)', q.tactic)})`);
  if (q.ip) {
    const range = (column: string) => c.inCidr(column, q.ip!);
    c.add(`(${range('src_ip')} OR ${range('dst_ip')} OR arrayExists(a -> ${range('a')}, related_ips))`);
  }
  if (q.exporter) c.add(`has(exporters, toIPv6(${c.param('String', columnAddress(q.exporter))}))`);
  if (q.q) c.add(`positionCaseInsensitiveUTF8(title, ${c.param('String', q.q)}) > 0`);
  const column = q.sort.replace(/^-/, '') as 'created_at' | 'first_seen' | 'last_seen';
  const descending = q.sort.startsWith('-');
  if (q.cursor) {
    const cur = decodeCursor(q.cursor, q.sort);
    c.add(
      `(${column}, id) ${descending ? '<' : '>'} (fromUnixTimestamp64Milli(${c.param('Int64', cur.at)}, 'UTC'), ${c.param('String', cur.id)})`,
    );
  }
  const direction = descending ? 'DESC' : 'ASC';
  const rows = await queryRows<Parameters<typeof rowToFinding>[0]>(
    store,
    `SELECT ${FINDING_COLUMNS} FROM findings FINAL
     ${c.sql()}
     ORDER BY ${column} ${direction}, id ${direction}
     LIMIT ${c.param('UInt32', q.limit + 1)}`,
    c.params,
    { readonly: true, timeoutSeconds },
  );
  const items = rows.slice(0, q.limit).map(rowToFinding);
  const last = items[items.length - 1];
  const next_cursor =
    rows.length > q.limit && last
      ? encodeCursor({ sort: q.sort, at: Date.parse(last[column]), id: last.id })
      : null;
  return { items, next_cursor };
}

const DAY = 86_400_000;

/**
 * The flow records behind a finding: the flows between its source and destination (both ways, so
 * answers are included) that overlap its first_seen..last_seen; a finding with only one of them
 * (a sweep, a flood) pairs it with its related IPs, or takes every flow of that host when it has none.
 * Spans longer than api.maxRangeDays are cut to their last maxRangeDays.
 */
function findingFlowConditions(f: Finding, limits: QueryLimits): Conditions | null {
  const side = (ip: string | null) => (ip ? [ip] : f.related_ips);
  const a = side(f.src_ip);
  const b = side(f.dst_ip);
  const c = new Conditions();
  const last = Date.parse(f.last_seen);
  const first = Math.max(Date.parse(f.first_seen), last - limits.maxRangeDays * DAY);
  c.add(`flow_end >= fromUnixTimestamp64Milli(${c.param('Int64', first)}, 'UTC')`);
  c.add(`flow_start <= fromUnixTimestamp64Milli(${c.param('Int64', last)}, 'UTC')`);
  if (a.length === 0 && b.length === 0) return null;
  if (a.length === 0 || b.length === 0) {
    const hosts = a.length > 0 ? a : b;
    c.add(`(${c.inAddresses('src_addr', hosts)} OR ${c.inAddresses('dst_addr', hosts)})`);
  } else {
    c.add(
      `((${c.inAddresses('src_addr', a)} AND ${c.inAddresses('dst_addr', b)}) OR (${c.inAddresses('src_addr', b)} AND ${c.inAddresses('dst_addr', a)}))`,
    );
  }
  return c;
}

export function findingsRoutes(app: ZodApp, deps: FindingsDeps): void {
  const detail = async (f: Finding) => ({
    ...f,
    history: await deps.findings.history(f.id),
    allowlist_rules: await deps.allowlist.list({ findingId: f.id }),
  });
  const getFinding = async (id: string): Promise<Finding> => {
    const f = await deps.findings.get(id);
    if (!f) throw new ApiError(404, 'not_found', `no finding ${id}`);
    return f;
  };

  app.get(
    '/api/v1/findings',
    {
      schema: {
        summary: 'Findings, filtered, sorted and paginated',
        tags: ['findings'],
        querystring: findingsQuery,
        response: { 200: findingsPage, ...commonErrors },
      },
    },
    async (request) => listFindings(deps.store, request.query, deps.limits.queryTimeoutSeconds),
  );

  app.get(
    '/api/v1/findings/:id',
    {
      schema: {
        summary: 'A finding with its evidence, history and allowlist rules',
        tags: ['findings'],
        params: z.strictObject({ id: findingId }),
        response: { 200: findingDetail, 404: errorBody, ...commonErrors },
      },
    },
    async (request) => detail(await getFinding(request.params.id)),
  );

  app.get(
    '/api/v1/findings/:id/flows',
    {
      schema: {
        summary: 'The flow records behind a finding, newest first, paginated',
        tags: ['findings'],
        params: z.strictObject({ id: findingId }),
        querystring: z.strictObject({
          limit: z.coerce.number().int().min(1).max(MAX_FLOW_PAGE).default(100),
          cursor: z.string().max(1024).optional(),
        }),
        response: { 200: flowsPage, 404: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      const f = await getFinding(request.params.id);
      const conditions = findingFlowConditions(f, deps.limits);
      if (!conditions) return { items: [], next_cursor: null };
      return flowPage(deps.store, deps.limits, conditions, request.query.limit, request.query.cursor);
    },
  );

  app.patch(
    '/api/v1/findings/:id',
    {
      schema: {
        summary:
          'Change the status of a finding (kept in its history); suppressing can add an allowlist rule',
        tags: ['findings'],
        params: z.strictObject({ id: findingId }),
        body: findingPatch,
        response: { 200: findingDetail, 404: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      const { status, comment, user, allowlist } = request.body;
      const principal = request.principal;
      const actor = principal ? (user ? `${principal.name}/${user}` : principal.name) : (user ?? 'anonymous');
      const current = await getFinding(request.params.id);

      let rule: Parameters<AllowlistStore['create']>[0] | null = null;
      if (allowlist) {
        const side = (name: 'src' | 'dst', ip: string | null, cidr: string | undefined): string | null => {
          if (!(allowlist.match === name || allowlist.match === 'pair')) {
            if (cidr)
              throw new ApiError(
                400,
                'bad_request',
                `allowlist.${name}_cidr: only with match ${name} or pair`,
              );
            return null;
          }
          if (!ip) throw new ApiError(400, 'bad_request', `allowlist.match: this finding has no ${name}_ip`);
          if (cidr && !new AddressSet([cidr]).has(ip)) {
            throw new ApiError(400, 'bad_request', `allowlist.${name}_cidr: ${cidr} does not contain ${ip}`);
          }
          return cidr ?? ip;
        };
        const expiresAt = allowlist.expires_at ? Date.parse(allowlist.expires_at) : null;
        if (expiresAt !== null && expiresAt <= Date.now()) {
          throw new ApiError(400, 'bad_request', 'allowlist.expires_at: must be in the future');
        }
        rule = {
          detector: allowlist.detector === 'this' ? current.detector : null,
          srcCidr: side('src', current.src_ip, allowlist.src_cidr),
          dstCidr: side('dst', current.dst_ip, allowlist.dst_cidr),
          comment,
          actor,
          expiresAt,
          findingId: current.id,
        };
      }

      const updated = await deps.findings.setStatus(current.id, status, actor, comment);
      if (!updated) throw new ApiError(404, 'not_found', `no finding ${current.id}`);
      if (rule) {
        const made = await deps.allowlist.create(rule);
        await deps.findings.recordEvent(current.id, {
          actor,
          action: 'allowlist_rule_created',
          comment: describeRule(made),
          ruleId: made.id,
        });
      }
      // Leaving "suppressed" lifts the suppression: the rules it made are removed.
      if (current.status === 'suppressed' && status !== 'suppressed') {
        for (const r of await deps.allowlist.list({ findingId: current.id })) {
          await deps.allowlist.remove(r.id, actor);
          await deps.findings.recordEvent(current.id, {
            actor,
            action: 'allowlist_rule_removed',
            comment: `status ${status}: ${describeRule(r)}`,
            ruleId: r.id,
          });
        }
      }
      return detail(updated);
    },
  );
}

export function describeRule(r: AllowlistRule): string {
  const sides = [r.src_cidr ? `src ${r.src_cidr}` : null, r.dst_cidr ? `dst ${r.dst_cidr}` : null]
    .filter(Boolean)
    .join(' and ');
  return `${sides} for ${r.detector ?? 'every detector'}${r.expires_at ? ` until ${r.expires_at}` : ''}`;
}
