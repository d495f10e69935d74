import { z } from 'zod';
import { parseAddress } from '../common/ip.js';
import { cidrRange, displayAddress } from '../detect/networks.js';
import { queryRows, type Store } from '../storage/clickhouse.js';
import { FLOW_COLUMN_LIST, type FlowColumn } from '../storage/flow-columns.js';
import { ApiError, commonErrors, ipAddress, ipOrCidr, isoTime, ms, type Same, type ZodApp } from './types.js';

/** Limits every flow query obeys (api.* in the configuration). */
export interface QueryLimits {
  /** max_execution_time of each query. */
  readonly queryTimeoutSeconds: number;
  /** Longest [from, to) of a query on raw flows. */
  readonly maxRangeDays: number;
}

export interface FlowsDeps {
  readonly store: Store;
  readonly limits: QueryLimits;
}

const DAY = 86_400_000;
/** The rollup tables keep a year (flows_1h); a timeseries they answer may span that much. */
const MAX_ROLLUP_RANGE_DAYS = 366;
const MAX_POINTS = 2_000;
/** Most flow records one page returns. */
export const MAX_FLOW_PAGE = 1_000;
/** Most rows with the same sort key a cursor may skip (identical flow records). */
const MAX_TIE_SKIP = 100_000;

export const PROTOCOLS: Readonly<Record<string, number>> = {
  icmp: 1,
  igmp: 2,
  tcp: 6,
  udp: 17,
  gre: 47,
  esp: 50,
  ah: 51,
  icmpv6: 58,
  sctp: 132,
};

const protocol = z
  .string()
  .max(16)
  .transform((s, ctx) => {
    const lower = s.toLowerCase();
    const n = /^\d{1,3}$/.test(lower) ? Number(lower) : PROTOCOLS[lower];
    if (n === undefined || n > 255) {
      ctx.addIssue({
        code: 'custom',
        message: `expected an IP protocol number 0-255 or one of ${Object.keys(PROTOCOLS).join(', ')}`,
      });
      return z.NEVER;
    }
    return n;
  })
  .describe('IP protocol: a number (6) or a name (tcp, udp, icmp, icmpv6, gre, esp, ah, sctp, igmp)');

const port = z.coerce.number().int().min(0).max(65_535);

/** Filters on flows shared by the search, top, timeseries and summary-like queries. */
export const flowFilterShape = {
  ip: ipOrCidr.optional().describe('address or CIDR matching the source or the destination'),
  src_ip: ipOrCidr.optional().describe('address or CIDR of the source'),
  dst_ip: ipOrCidr.optional().describe('address or CIDR of the destination'),
  port: port.optional().describe('source or destination port'),
  src_port: port.optional(),
  dst_port: port.optional(),
  protocol: protocol.optional(),
  exporter: ipAddress.optional().describe('address of the exporter'),
};

export interface FlowFilters {
  readonly ip?: string | undefined;
  readonly src_ip?: string | undefined;
  readonly dst_ip?: string | undefined;
  readonly port?: number | undefined;
  readonly src_port?: number | undefined;
  readonly dst_port?: number | undefined;
  readonly protocol?: number | undefined;
  readonly exporter?: string | undefined;
}

/** Whether only the rollup tables' dimensions are filtered on (exporter, protocol). */
function rollupFilters(f: FlowFilters): boolean {
  return (
    f.ip === undefined &&
    f.src_ip === undefined &&
    f.dst_ip === undefined &&
    f.port === undefined &&
    f.src_port === undefined &&
    f.dst_port === undefined
  );
}

/** SQL conditions with their query parameters; values never enter the text. */
export class Conditions {
  readonly where: string[] = [];
  readonly params: Record<string, unknown> = {};
  private n = 0;

  /** Adds a parameter and returns its placeholder, e.g. {p3:UInt16}. */
  param(type: string, value: unknown): string {
    const name = `p${this.n++}`;
    this.params[name] = value;
    return `{${name}:${type}}`;
  }

  add(condition: string): this {
    this.where.push(condition);
    return this;
  }

  /** `column` within the CIDR (a range of the 16-byte representation, IPv4 as ::ffff:a.b.c.d). */
  inCidr(column: string, cidr: string): string {
    const { lo, hi } = cidrRange(cidr);
    return `(${column} >= ${this.param('IPv6', lo)} AND ${column} <= ${this.param('IPv6', hi)})`;
  }

  /** `column` equal to one of the addresses. */
  inAddresses(column: string, addresses: readonly string[]): string {
    return `${column} IN ${this.param('Array(IPv6)', addresses.map(columnAddress))}`;
  }

  filters(f: FlowFilters, table: 'flows' | 'rollup' = 'flows'): this {
    if (f.ip) this.add(`(${this.inCidr('src_addr', f.ip)} OR ${this.inCidr('dst_addr', f.ip)})`);
    if (f.src_ip) this.add(this.inCidr('src_addr', f.src_ip));
    if (f.dst_ip) this.add(this.inCidr('dst_addr', f.dst_ip));
    if (f.port !== undefined) {
      const p = this.param('UInt16', f.port);
      this.add(`(src_port = ${p} OR dst_port = ${p})`);
    }
    if (f.src_port !== undefined) this.add(`src_port = ${this.param('UInt16', f.src_port)}`);
    if (f.dst_port !== undefined) this.add(`dst_port = ${this.param('UInt16', f.dst_port)}`);
    if (f.protocol !== undefined) this.add(`proto = ${this.param('UInt8', f.protocol)}`);
    if (f.exporter !== undefined) {
      this.add(`exporter_address = toIPv6(${this.param('String', columnAddress(f.exporter))})`);
    }
    if (table === 'rollup' && !rollupFilters(f)) throw new Error('host or port filter on a rollup table');
    return this;
  }

  sql(): string {
    return this.where.length > 0 ? `WHERE ${this.where.join(' AND ')}` : '';
  }
}

/** An address as the IPv6 columns hold it (IPv4 as ::ffff:a.b.c.d). */
export function columnAddress(address: string): string {
  return address.includes(':') ? address : `::ffff:${address}`;
}

const bounds = (q: unknown) => q as { from: string; to: string };

/** A [from, to) pair of ISO times, checked for order and length. */
export function timeRange<S extends z.ZodRawShape>(shape: S, maxDays: number, what = 'a flow query') {
  return z
    .strictObject({
      from: isoTime.describe('start (inclusive), ISO 8601'),
      to: isoTime.describe('end (exclusive), ISO 8601'),
      ...shape,
    })
    .refine((q) => ms(bounds(q).from) < ms(bounds(q).to), {
      message: '`from` must be before `to`',
      path: ['to'],
    })
    .refine((q) => ms(bounds(q).to) - ms(bounds(q).from) <= maxDays * DAY, {
      message: `at most ${maxDays} days per request for ${what}`,
      path: ['to'],
    });
}

// ---------------------------------------------------------------------------------------------
// Flow records

const iso = z.string().describe('ISO 8601 UTC');

export const flowRecord = z
  .object({
    time_received: iso.describe('when the collector received the export packet'),
    flow_start: iso,
    flow_end: iso,
    exporter_address: z.string(),
    version: z.number().describe('5, 9 or 10 (IPFIX)'),
    observation_domain_id: z.number(),
    in_if: z.number(),
    out_if: z.number(),
    src_addr: z.string().describe('IPv4 as a.b.c.d'),
    dst_addr: z.string(),
    src_port: z.number(),
    dst_port: z.number(),
    proto: z.number(),
    tcp_flags: z.number(),
    tos: z.number(),
    bytes: z.number().describe('scaled by sampling_rate'),
    packets: z.number().describe('scaled by sampling_rate'),
    sampling_rate: z.number(),
    src_as: z.number(),
    dst_as: z.number(),
    src_mask: z.number(),
    dst_mask: z.number(),
    next_hop: z.string().nullable(),
    direction: z.enum(['unknown', 'ingress', 'egress']),
    icmp_type: z.number(),
    icmp_code: z.number(),
    src_vlan: z.number(),
    dst_vlan: z.number(),
    end_reason: z.number(),
    firewall_event: z.number(),
    reverse_bytes: z.number(),
    reverse_packets: z.number(),
  })
  .meta({ id: 'Flow' });

export type FlowRecord = z.infer<typeof flowRecord>;

/** The record has exactly the columns of `flows` (a column added to the table must be added here). */
export const FLOW_RECORD_MATCHES_TABLE: Same<
  Record<keyof FlowRecord, unknown>,
  Record<FlowColumn, unknown>
> = true;

export const flowsPage = z.object({
  items: z.array(flowRecord),
  next_cursor: z.string().nullable().describe('pass as `cursor` for the next page; null on the last'),
});

type FlowRow = Record<FlowColumn, unknown> & {
  k_end: number;
  k_recv: number;
  k_start: number;
};

const isoOf = (v: unknown): string => {
  const s = String(v);
  return new Date(Date.parse(/[zZ]$/.test(s) ? s : `${s.replace(' ', 'T')}Z`)).toISOString();
};
const num = (v: unknown): number => Number(v);
const address = (v: unknown): string => displayAddress(String(v)) ?? '::';

function rowToFlow(r: FlowRow): FlowRecord {
  return {
    time_received: isoOf(r.time_received),
    flow_start: isoOf(r.flow_start),
    flow_end: isoOf(r.flow_end),
    exporter_address: address(r.exporter_address),
    version: num(r.version),
    observation_domain_id: num(r.observation_domain_id),
    in_if: num(r.in_if),
    out_if: num(r.out_if),
    src_addr: address(r.src_addr),
    dst_addr: address(r.dst_addr),
    src_port: num(r.src_port),
    dst_port: num(r.dst_port),
    proto: num(r.proto),
    tcp_flags: num(r.tcp_flags),
    tos: num(r.tos),
    bytes: num(r.bytes),
    packets: num(r.packets),
    sampling_rate: num(r.sampling_rate),
    src_as: num(r.src_as),
    dst_as: num(r.dst_as),
    src_mask: num(r.src_mask),
    dst_mask: num(r.dst_mask),
    next_hop: displayAddress(String(r.next_hop)),
    direction: r.direction as FlowRecord['direction'],
    icmp_type: num(r.icmp_type),
    icmp_code: num(r.icmp_code),
    src_vlan: num(r.src_vlan),
    dst_vlan: num(r.dst_vlan),
    end_reason: num(r.end_reason),
    firewall_event: num(r.firewall_event),
    reverse_bytes: num(r.reverse_bytes),
    reverse_packets: num(r.reverse_packets),
  };
}

/**
 * The sort key of flow pages, newest first: flows have no id, so the key is made of the columns that
 * tell records apart, and a cursor also counts the records with its exact key already returned
 * (identical records exist), so pages neither overlap nor skip.
 */
const KEY_COLUMNS =
  '(flow_end, time_received, exporter_address, src_addr, dst_addr, src_port, dst_port, proto, flow_start)';

type FlowKey = [number, number, string, string, string, number, number, number, number];

function keyOf(r: FlowRow): FlowKey {
  return [
    num(r.k_end),
    num(r.k_recv),
    String(r.exporter_address),
    String(r.src_addr),
    String(r.dst_addr),
    num(r.src_port),
    num(r.dst_port),
    num(r.proto),
    num(r.k_start),
  ];
}

const sameKey = (a: FlowKey, b: FlowKey) => a.every((v, i) => v === b[i]);

interface FlowCursor {
  readonly key: FlowKey;
  readonly skip: number;
}

function encodeFlowCursor(c: FlowCursor): string {
  return Buffer.from(JSON.stringify(['f', ...c.key, c.skip])).toString('base64url');
}

const BAD_CURSOR = () =>
  new ApiError(400, 'bad_request', 'cursor: not a cursor of this query (pass next_cursor back unchanged)');

function decodeFlowCursor(text: string): FlowCursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw BAD_CURSOR();
  }
  const shape = z.tuple([
    z.literal('f'),
    z.number().int(),
    z.number().int(),
    z.string().max(64),
    z.string().max(64),
    z.string().max(64),
    z.number().int().min(0).max(65_535),
    z.number().int().min(0).max(65_535),
    z.number().int().min(0).max(255),
    z.number().int(),
    z.number().int().min(1).max(MAX_TIE_SKIP),
  ]);
  const r = shape.safeParse(parsed);
  if (!r.success) throw BAD_CURSOR();
  const [, end, recv, exporter, src, dst, sport, dport, proto, start, skip] = r.data;
  for (const a of [exporter, src, dst]) if (parseAddress(a) === null) throw BAD_CURSOR();
  return { key: [end, recv, exporter, src, dst, sport, dport, proto, start], skip };
}

/**
 * One page of flow records matching `conditions` (which must bound the time), newest first. Shared by
 * GET /api/v1/flows and GET /api/v1/findings/{id}/flows.
 */
export async function flowPage(
  store: Store,
  limits: QueryLimits,
  conditions: Conditions,
  limit: number,
  cursorText: string | undefined,
): Promise<z.infer<typeof flowsPage>> {
  const cursor = cursorText ? decodeFlowCursor(cursorText) : null;
  if (cursor) {
    const [end, recv, exporter, src, dst, sport, dport, proto, start] = cursor.key;
    const c = conditions;
    c.add(
      `${KEY_COLUMNS} <= (fromUnixTimestamp64Milli(${c.param('Int64', end)}, 'UTC'), toDateTime(${c.param('UInt32', recv)}, 'UTC'), ` +
        `${c.param('IPv6', exporter)}, ${c.param('IPv6', src)}, ${c.param('IPv6', dst)}, ${c.param('UInt16', sport)}, ` +
        `${c.param('UInt16', dport)}, ${c.param('UInt8', proto)}, fromUnixTimestamp64Milli(${c.param('Int64', start)}, 'UTC'))`,
    );
  }
  const skip = cursor?.skip ?? 0;
  const fetch = limit + skip + 1;
  const rows = await queryRows<FlowRow>(
    store,
    `SELECT ${FLOW_COLUMN_LIST},
            toUnixTimestamp64Milli(flow_end) AS k_end, toUnixTimestamp(time_received) AS k_recv,
            toUnixTimestamp64Milli(flow_start) AS k_start
     FROM flows ${conditions.sql()}
     ORDER BY flow_end DESC, time_received DESC, exporter_address DESC, src_addr DESC, dst_addr DESC,
              src_port DESC, dst_port DESC, proto DESC, flow_start DESC
     LIMIT ${conditions.param('UInt32', fetch)}`,
    conditions.params,
    { readonly: true, timeoutSeconds: limits.queryTimeoutSeconds },
  );
  // Drop the records with the cursor's key that earlier pages returned.
  let start = 0;
  if (cursor) while (start < skip && start < rows.length && sameKey(keyOf(rows[start]!), cursor.key)) start++;
  const page = rows.slice(start, start + limit);
  const more = rows.length > start + limit;
  let next_cursor: string | null = null;
  const last = page[page.length - 1];
  if (more && last) {
    const key = keyOf(last);
    let same = 0;
    for (let i = page.length - 1; i >= 0 && sameKey(keyOf(page[i]!), key); i--) same++;
    if (cursor && sameKey(key, cursor.key)) same += start;
    if (same > MAX_TIE_SKIP)
      throw new ApiError(400, 'bad_request', 'too many identical flow records to page');
    next_cursor = encodeFlowCursor({ key, skip: same });
  }
  return { items: page.map(rowToFlow), next_cursor };
}

// ---------------------------------------------------------------------------------------------
// Top N, timeseries, summary

export const TOP_DIMENSIONS = {
  src: 'src_addr',
  dst: 'dst_addr',
  src_port: 'src_port',
  dst_port: 'dst_port',
  protocol: 'proto',
  exporter: 'exporter_address',
  src_as: 'src_as',
  dst_as: 'dst_as',
} as const;

const ADDRESS_DIMENSIONS = new Set(['src', 'dst', 'exporter']);

const METRICS = ['bytes', 'packets', 'flows'] as const;

const counters = { flows: z.number(), bytes: z.number(), packets: z.number() };

const topResponse = z.object({
  by: z.enum(Object.keys(TOP_DIMENSIONS) as [keyof typeof TOP_DIMENSIONS]),
  metric: z.enum(METRICS),
  items: z.array(
    z.object({
      key: z.union([z.string(), z.number()]).describe('address, port, protocol number or AS number'),
      ...counters,
      share: z.number().describe("this key's part of the metric over all matching flows, 0..1"),
    }),
  ),
  totals: z.object(counters).describe('over all matching flows, not only the top items'),
});

const timeseriesResponse = z.object({
  from: z.string().describe('start of the first interval (the range widened to whole intervals)'),
  to: z.string(),
  interval_seconds: z.number(),
  source: z.enum(['flows_1h', 'flows_1m', 'flows']).describe('the table that answered'),
  points: z.array(z.object({ time: z.string().describe('start of the interval'), ...counters })),
});

const summaryResponse = z.object(counters);

/** Intervals the timeseries picks from when none is given: the smallest giving at most 300 points. */
const NICE_INTERVALS = [60, 300, 900, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400, 604_800];

export function defaultInterval(rangeMs: number): number {
  return (
    NICE_INTERVALS.find((s) => rangeMs / (s * 1000) <= 300) ?? NICE_INTERVALS[NICE_INTERVALS.length - 1]!
  );
}

const interval = z
  .string()
  .regex(/^\d{1,7}[smhd]?$/, 'expected seconds, or a number with s, m, h or d (5m, 1h)')
  .transform((s) => {
    const unit = { s: 1, m: 60, h: 3_600, d: 86_400 }[s.slice(-1)] ?? 1;
    return Number.parseInt(s, 10) * unit;
  })
  .pipe(
    z
      .number()
      .int()
      .min(1, 'at least 1 s')
      .max(7 * 86_400, 'at most 7 days'),
  );

export function flowsRoutes(app: ZodApp, deps: FlowsDeps): void {
  const { store, limits } = deps;
  const options = { readonly: true, timeoutSeconds: limits.queryTimeoutSeconds } as const;

  const searchQuery = timeRange(
    {
      ...flowFilterShape,
      limit: z.coerce.number().int().min(1).max(MAX_FLOW_PAGE).default(100),
      cursor: z.string().max(1024).optional().describe('next_cursor of the previous page'),
    },
    limits.maxRangeDays,
  );

  app.get(
    '/api/v1/flows',
    {
      schema: {
        summary: 'Flow records whose flow_end is in [from, to), newest first, with filters',
        tags: ['flows'],
        querystring: searchQuery,
        response: { 200: flowsPage, ...commonErrors },
      },
    },
    async (request) => {
      const q = request.query;
      const c = new Conditions();
      c.add(
        `flow_end >= fromUnixTimestamp64Milli(${c.param('Int64', ms(q.from))}, 'UTC') AND flow_end < fromUnixTimestamp64Milli(${c.param('Int64', ms(q.to))}, 'UTC')`,
      );
      c.filters(q);
      return flowPage(store, limits, c, q.limit, q.cursor);
    },
  );

  const topQuery = timeRange(
    {
      ...flowFilterShape,
      by: z.enum(Object.keys(TOP_DIMENSIONS) as [keyof typeof TOP_DIMENSIONS]).default('src'),
      metric: z.enum(METRICS).default('bytes'),
      limit: z.coerce.number().int().min(1).max(100).default(10),
    },
    limits.maxRangeDays,
  );

  app.get(
    '/api/v1/flows/top',
    {
      schema: {
        summary:
          'Top N sources, destinations, ports, protocols, exporters or ASes by bytes, packets or flows',
        tags: ['flows'],
        querystring: topQuery,
        response: { 200: topResponse, ...commonErrors },
      },
    },
    async (request) => {
      const q = request.query;
      const c = new Conditions();
      c.add(
        `flow_end >= fromUnixTimestamp64Milli(${c.param('Int64', ms(q.from))}, 'UTC') AND flow_end < fromUnixTimestamp64Milli(${c.param('Int64', ms(q.to))}, 'UTC')`,
      );
      c.filters(q);
      const column = TOP_DIMENSIONS[q.by];
      const rows = await queryRows<{
        key: string | number;
        n_flows: number;
        n_bytes: number;
        n_packets: number;
        all_flows: number;
        all_bytes: number;
        all_packets: number;
      }>(
        store,
        // Aliases differ from column names (an alias named like a column would stand for it elsewhere).
        `SELECT ${column} AS key, count() AS n_flows, sum(bytes) AS n_bytes, sum(packets) AS n_packets,
                sum(n_flows) OVER () AS all_flows, sum(n_bytes) OVER () AS all_bytes, sum(n_packets) OVER () AS all_packets
         FROM flows ${c.sql()}
         GROUP BY key
         ORDER BY n_${q.metric} DESC, key ASC
         LIMIT ${c.param('UInt32', q.limit)}`,
        c.params,
        { ...options, settings: { max_rows_to_group_by: 10_000_000, group_by_overflow_mode: 'throw' } },
      );
      const first = rows[0];
      const totals = {
        flows: Number(first?.all_flows ?? 0),
        bytes: Number(first?.all_bytes ?? 0),
        packets: Number(first?.all_packets ?? 0),
      };
      return {
        by: q.by,
        metric: q.metric,
        items: rows.map((r) => {
          const value = Number(r[`n_${q.metric}`]);
          return {
            key: ADDRESS_DIMENSIONS.has(q.by) ? address(r.key) : Number(r.key),
            flows: Number(r.n_flows),
            bytes: Number(r.n_bytes),
            packets: Number(r.n_packets),
            share: totals[q.metric] > 0 ? Math.round((value / totals[q.metric]) * 1e6) / 1e6 : 0,
          };
        }),
        totals,
      };
    },
  );

  const timeseriesQuery = timeRange(
    {
      ...flowFilterShape,
      interval: interval
        .optional()
        .describe(
          `seconds or 5m, 1h, 1d; default: the smallest of ${NICE_INTERVALS.join(', ')} s giving ≤ 300 points`,
        ),
    },
    MAX_ROLLUP_RANGE_DAYS,
    'a timeseries',
  );

  app.get(
    '/api/v1/flows/timeseries',
    {
      schema: {
        summary:
          'Flows, bytes and packets per interval of receive time (answered from the rollups when it can)',
        tags: ['flows'],
        querystring: timeseriesQuery,
        response: { 200: timeseriesResponse, ...commonErrors },
      },
    },
    async (request) => {
      const q = request.query;
      const step = q.interval ?? defaultInterval(ms(q.to) - ms(q.from));
      const stepMs = step * 1000;
      const from = Math.floor(ms(q.from) / stepMs) * stepMs;
      const to = Math.ceil(ms(q.to) / stepMs) * stepMs;
      const points = (to - from) / stepMs;
      if (points > MAX_POINTS) {
        throw new ApiError(
          400,
          'bad_request',
          `interval: ${points} points; at most ${MAX_POINTS} per request (use a longer interval or a shorter range)`,
        );
      }
      const rollup = rollupFilters(q);
      const source: 'flows_1h' | 'flows_1m' | 'flows' =
        rollup && step % 3_600 === 0 ? 'flows_1h' : rollup && step % 60 === 0 ? 'flows_1m' : 'flows';
      if (source === 'flows' && to - from > limits.maxRangeDays * DAY) {
        throw new ApiError(
          400,
          'bad_request',
          `to: at most ${limits.maxRangeDays} days per request for a timeseries with host or port filters or an interval that is not whole minutes`,
        );
      }
      const c = new Conditions();
      const time = source === 'flows' ? 'time_received' : 'time_bucket';
      c.add(
        `${time} >= toDateTime(${c.param('UInt32', from / 1000)}, 'UTC') AND ${time} < toDateTime(${c.param('UInt32', to / 1000)}, 'UTC')`,
      );
      c.filters(q, source === 'flows' ? 'flows' : 'rollup');
      const stepParam = c.param('UInt32', step);
      const rows = await queryRows<{ t: number; n_flows: number; n_bytes: number; n_packets: number }>(
        store,
        `SELECT intDiv(toUnixTimestamp(${time}), ${stepParam}) * ${stepParam} AS t,
                ${source === 'flows' ? 'count()' : 'sum(flows)'} AS n_flows, sum(bytes) AS n_bytes, sum(packets) AS n_packets
         FROM ${source} ${c.sql()}
         GROUP BY t ORDER BY t`,
        c.params,
        options,
      );
      const byTime = new Map(rows.map((r) => [Number(r.t) * 1000, r]));
      return {
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        interval_seconds: step,
        source,
        points: Array.from({ length: points }, (_, i) => {
          const t = from + i * stepMs;
          const r = byTime.get(t);
          return {
            time: new Date(t).toISOString(),
            flows: Number(r?.n_flows ?? 0),
            bytes: Number(r?.n_bytes ?? 0),
            packets: Number(r?.n_packets ?? 0),
          };
        }),
      };
    },
  );

  // The ingest issue's summary, unchanged: any range (one aggregate row; the query timeout bounds it).
  const summaryQuery = z
    .strictObject({
      from: isoTime,
      to: isoTime,
      exporter: ipAddress.optional(),
    })
    .refine((q) => !(Date.parse(q.from) >= Date.parse(q.to)), {
      message: '`from` must be before `to`',
      path: ['to'],
    });

  app.get(
    '/api/v1/flows/summary',
    {
      schema: {
        summary: 'Flows, bytes and packets of the flows whose flow_end is in [from, to)',
        tags: ['flows'],
        querystring: summaryQuery,
        response: { 200: summaryResponse, ...commonErrors },
      },
    },
    async (request) => {
      const { from, to, exporter } = request.query;
      const params: Record<string, unknown> = { from: Date.parse(from), to: Date.parse(to) };
      let filter = '';
      if (exporter !== undefined) {
        params.exporter = exporter;
        filter = 'AND exporter_address = toIPv6({exporter:String})';
      }
      const [row] = await queryRows<{ flows: number; bytes: number; packets: number }>(
        store,
        `SELECT count() AS flows, sum(bytes) AS bytes, sum(packets) AS packets
         FROM flows
         WHERE flow_end >= fromUnixTimestamp64Milli({from:Int64}) AND flow_end < fromUnixTimestamp64Milli({to:Int64})
         ${filter}`,
        params,
        options,
      );
      return {
        flows: Number(row?.flows ?? 0),
        bytes: Number(row?.bytes ?? 0),
        packets: Number(row?.packets ?? 0),
      };
    },
  );
}
