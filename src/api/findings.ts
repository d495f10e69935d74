import { z } from 'zod';
import { findingSchema, SEVERITIES, STATUSES } from '../findings/model.js';
import { FINDING_COLUMNS, type FindingStore, rowToFinding } from '../findings/store.js';
import { queryRows, type Store } from '../storage/clickhouse.js';
import { ApiError, csv, errorBody, isoTime, type ZodApp } from './types.js';

export interface FindingsDeps {
  readonly store: Store;
  readonly findings: FindingStore;
}

const SORTS = ['created_at', '-created_at', 'first_seen', '-first_seen', 'last_seen', '-last_seen'] as const;

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

const findingsPage = z.object({ items: z.array(findingSchema), next_cursor: z.string().nullable() });

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
export async function listFindings(store: Store, q: FindingsQuery): Promise<z.infer<typeof findingsPage>> {
  const where: string[] = [];
  const params: Record<string, unknown> = {};
  if (q.from) {
    where.push(`last_seen >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')`);
    params.from = Date.parse(q.from);
  }
  if (q.to) {
    where.push(`first_seen < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`);
    params.to = Date.parse(q.to);
  }
  if (q.detector && q.detector.length > 0) {
    where.push('detector IN {detectors:Array(String)}');
    params.detectors = q.detector;
  }
  if (q.severity) {
    where.push('severity >= {severity:String}');
    params.severity = q.severity;
  }
  if (q.status && q.status.length > 0) {
    where.push('status IN {statuses:Array(String)}');
    params.statuses = q.status;
  }
  if (q.technique) {
    where.push(
      `arrayExists(t -> t = {technique:String} OR startsWith(t, concat({technique:String}, '.')), technique_ids)`,
    );
    params.technique = q.technique;
  }
  const column = q.sort.replace(/^-/, '') as 'created_at' | 'first_seen' | 'last_seen';
  const descending = q.sort.startsWith('-');
  if (q.cursor) {
    const c = decodeCursor(q.cursor, q.sort);
    where.push(
      `(${column}, id) ${descending ? '<' : '>'} (fromUnixTimestamp64Milli({cursor_at:Int64}, 'UTC'), {cursor_id:String})`,
    );
    params.cursor_at = c.at;
    params.cursor_id = c.id;
  }
  params.limit = q.limit + 1;
  const direction = descending ? 'DESC' : 'ASC';
  const rows = await queryRows<Parameters<typeof rowToFinding>[0]>(
    store,
    `SELECT ${FINDING_COLUMNS} FROM findings FINAL
     ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY ${column} ${direction}, id ${direction}
     LIMIT {limit:UInt32}`,
    params,
    { readonly: true, timeoutSeconds: 30 },
  );
  const items = rows.slice(0, q.limit).map(rowToFinding);
  const last = items[items.length - 1];
  const next_cursor =
    rows.length > q.limit && last
      ? encodeCursor({ sort: q.sort, at: Date.parse(last[column]), id: last.id })
      : null;
  return { items, next_cursor };
}

export function findingsRoutes(app: ZodApp, deps: FindingsDeps): void {
  app.get(
    '/api/v1/findings',
    { schema: { querystring: findingsQuery, response: { 200: findingsPage, 400: errorBody } } },
    async (request) => listFindings(deps.store, request.query),
  );

  app.get(
    '/api/v1/findings/:id',
    {
      schema: {
        params: z.strictObject({ id: z.string().regex(/^[0-9a-f-]{36}$/, 'expected a finding id') }),
        response: { 200: findingSchema, 404: errorBody, 400: errorBody },
      },
    },
    async (request) => {
      const finding = await deps.findings.get(request.params.id);
      if (!finding) throw new ApiError(404, 'not_found', `no finding ${request.params.id}`);
      return finding;
    },
  );
}
