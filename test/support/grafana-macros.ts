/**
 * The SQL macros of Grafana's ClickHouse data source plugin (grafana-clickhouse-datasource 4.x),
 * expanded as its backend does before the query reaches ClickHouse: the definitions are those of
 * pkg/macros/macros.go in github.com/grafana/clickhouse-datasource (times as whole seconds through
 * toDateTime, milliseconds through fromUnixTimestamp64Milli, intervals of at least 1 s or 1 ms), and
 * arguments are split on commas and trimmed as the plugin SDK's macro parser does. Macros are matched
 * whole-word, longest name first, so `$__timeFilter_ms` is never read as `$__timeFilter`.
 *
 * Only the plugin's own macros: dashboard variables (`$var`, `${var}`) are Grafana's frontend's
 * business, and a query using one is reported by `unexpandedTokens`.
 */

export interface MacroContext {
  /** The dashboard's time range (epoch ms). */
  readonly fromMs: number;
  readonly toMs: number;
  /** The panel's interval (Grafana derives it from the range and the panel width), in ms. */
  readonly intervalMs: number;
}

type Macro = (ctx: MacroContext, args: readonly string[]) => string;

const dateTime = (ms: number) => `toDateTime(${Math.floor(ms / 1000)})`;
const dateTime64 = (ms: number) => `fromUnixTimestamp64Milli(${Math.floor(ms)})`;
const date = (ms: number) => `toDate('${new Date(ms).toISOString().slice(0, 10)}')`;

function arity(name: string, args: readonly string[], n: number): void {
  if (args.length !== n) throw new Error(`$__${name}: expected ${n} argument(s), received ${args.length}`);
}

export const MACROS: Readonly<Record<string, Macro>> = {
  fromTime: (c) => dateTime(c.fromMs),
  toTime: (c) => dateTime(c.toMs),
  fromTime_ms: (c) => dateTime64(c.fromMs),
  toTime_ms: (c) => dateTime64(c.toMs),
  timeFilter: (c, a) => {
    arity('timeFilter', a, 1);
    return `${a[0]} >= ${dateTime(c.fromMs)} AND ${a[0]} <= ${dateTime(c.toMs)}`;
  },
  timeFilter_ms: (c, a) => {
    arity('timeFilter_ms', a, 1);
    return `${a[0]} >= ${dateTime64(c.fromMs)} AND ${a[0]} <= ${dateTime64(c.toMs)}`;
  },
  dateFilter: (c, a) => {
    arity('dateFilter', a, 1);
    return `${a[0]} >= ${date(c.fromMs)} AND ${a[0]} <= ${date(c.toMs)}`;
  },
  dateTimeFilter: (c, a) => dateTimeFilter(c, a),
  dt: (c, a) => dateTimeFilter(c, a),
  timeInterval: (c, a) => {
    arity('timeInterval', a, 1);
    return `toStartOfInterval(toDateTime(${a[0]}), INTERVAL ${intervalSeconds(c)} second)`;
  },
  timeInterval_ms: (c, a) => {
    arity('timeInterval_ms', a, 1);
    return `toStartOfInterval(toDateTime64(${a[0]}, 3), INTERVAL ${Math.max(Math.floor(c.intervalMs), 1)} millisecond)`;
  },
  interval_s: (c) => String(intervalSeconds(c)),
};

function dateTimeFilter(c: MacroContext, a: readonly string[]): string {
  arity('dateTimeFilter', a, 2);
  return (
    `(${a[0]} >= ${date(c.fromMs)} AND ${a[0]} <= ${date(c.toMs)}) AND ` +
    `(${a[1]} >= ${dateTime(c.fromMs)} AND ${a[1]} <= ${dateTime(c.toMs)})`
  );
}

function intervalSeconds(c: MacroContext): number {
  return Math.max(Math.floor(c.intervalMs / 1000), 1);
}

const NAMES = Object.keys(MACROS).sort((a, b) => b.length - a.length);

/** The query with every plugin macro expanded. */
export function expandMacros(sql: string, ctx: MacroContext): string {
  let out = sql;
  for (const name of NAMES) {
    const pattern = new RegExp(`\\$__${name}(?![A-Za-z0-9_])(?:\\(([^()]*)\\))?`, 'g');
    out = out.replace(pattern, (_match, args: string | undefined) =>
      MACROS[name]!(ctx, args === undefined ? [] : args.split(',').map((s) => s.trim())),
    );
  }
  return out;
}

/** `$__name` macros the plugin does not define, and dashboard variables, left in a query. */
export function unexpandedTokens(sql: string): string[] {
  return [...sql.matchAll(/\$\{?[A-Za-z_][A-Za-z0-9_]*/g)].map((m) => m[0]);
}
