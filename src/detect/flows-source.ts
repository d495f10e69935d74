import type { DetectorWindow } from './detector.js';
import type { AddressSet } from './networks.js';

/**
 * The SQL that `{{flows}}` stands for in a detector's query: the window's flows with the columns every
 * detector needs. The text is fixed (chosen by the run mode, never built from input); every value
 * in it is a query parameter.
 *
 * Scheduled runs select by time_received, the collector's clock (the primary key: a window reads a
 * few granules). Backfills select by the flows' own times: every flow that overlaps [range.from,
 * range.to), whenever it was received, with its end time clamped into the range as event time, so
 * that each flow falls in exactly one chunk of the backfill (minmax indexes on flow_start/flow_end
 * prune the parts).
 */
const INTERNAL = (column: string) =>
  `arrayExists((lo, hi) -> ${column} >= lo AND ${column} <= hi, {internal_lo:Array(IPv6)}, {internal_hi:Array(IPv6)})`;

const SCHEDULED = `(
  SELECT *,
    toDateTime64(time_received, 3, 'UTC') AS event_time,
    toUInt8(time_received >= toDateTime(intDiv({window_from:Int64}, 1000), 'UTC')) AS in_window,
    toUInt8(${INTERNAL('src_addr')}) AS src_internal,
    toUInt8(${INTERNAL('dst_addr')}) AS dst_internal
  FROM flows
  WHERE time_received >= toDateTime(intDiv({context_from:Int64}, 1000), 'UTC')
    AND time_received < toDateTime(intDiv({window_to:Int64}, 1000), 'UTC')
)`;

const BACKFILL = `(
  SELECT *,
    least(flow_end, fromUnixTimestamp64Milli({range_to:Int64} - 1, 'UTC')) AS event_time,
    toUInt8(event_time >= fromUnixTimestamp64Milli({window_from:Int64}, 'UTC')) AS in_window,
    toUInt8(${INTERNAL('src_addr')}) AS src_internal,
    toUInt8(${INTERNAL('dst_addr')}) AS dst_internal
  FROM flows
  WHERE flow_end >= fromUnixTimestamp64Milli(greatest({context_from:Int64}, {range_from:Int64}), 'UTC')
    AND flow_start < fromUnixTimestamp64Milli({range_to:Int64}, 'UTC')
    AND event_time < fromUnixTimestamp64Milli({window_to:Int64}, 'UTC')
)`;

export const FLOWS_PLACEHOLDER = '{{flows}}';

/** Replaces `{{flows}}` in `sql` and returns the parameters the replacement needs. */
export function expandFlows(
  sql: string,
  window: DetectorWindow,
  internal: AddressSet,
): { sql: string; params: Record<string, unknown> } {
  const source = window.mode === 'scheduled' ? SCHEDULED : BACKFILL;
  const params: Record<string, unknown> = {
    window_from: window.from,
    window_to: window.to,
    context_from: window.contextFrom,
    window_seconds: (window.to - window.from) / 1000,
    internal_lo: internal.lo,
    internal_hi: internal.hi,
  };
  if (window.range) {
    params.range_from = window.range.from;
    params.range_to = window.range.to;
  } else if (window.mode === 'backfill') {
    throw new Error('a backfill window needs its range');
  }
  return { sql: sql.split(FLOWS_PLACEHOLDER).join(source), params };
}
