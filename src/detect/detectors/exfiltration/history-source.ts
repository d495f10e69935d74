import type { RunMode } from '../../../findings/model.js';

/**
 * What `{{history}}` stands for in baseline.sql and prevalence.sql: the stored flows of
 * [history_from, recent_to), read straight from `flows` (the engine's `{{flows}}` covers only the
 * lookback). The time column follows the run mode, as the engine's own flow source does: scheduled
 * runs read by `time_received` (the primary key prunes the days read), backfills by the flows' own end
 * time (a replayed capture's history is its traffic time). `before_context` splits history (before the
 * lookback, the baseline) from the lookback itself, exactly where the engine's context begins, so no
 * flow is in both. The texts are fixed; every value in them is a query parameter.
 */
const INTERNAL = (column: string) =>
  `arrayExists((lo, hi) -> ${column} >= lo AND ${column} <= hi, {internal_lo:Array(IPv6)}, {internal_hi:Array(IPv6)})`;

const SCHEDULED = `(
  SELECT src_addr, dst_addr, bytes, reverse_bytes,
    toStartOfHour(time_received) AS hour,
    toUInt8(time_received < toDateTime(intDiv({history_to:Int64}, 1000), 'UTC')) AS before_context,
    toUInt8(${INTERNAL('src_addr')}) AS src_internal,
    toUInt8(${INTERNAL('dst_addr')}) AS dst_internal
  FROM flows
  WHERE time_received >= toDateTime(intDiv({history_from:Int64}, 1000), 'UTC')
    AND time_received < toDateTime(intDiv({recent_to:Int64}, 1000), 'UTC')
)`;

const BACKFILL = `(
  SELECT src_addr, dst_addr, bytes, reverse_bytes,
    toStartOfHour(flow_end) AS hour,
    toUInt8(flow_end < fromUnixTimestamp64Milli({history_to:Int64}, 'UTC')) AS before_context,
    toUInt8(${INTERNAL('src_addr')}) AS src_internal,
    toUInt8(${INTERNAL('dst_addr')}) AS dst_internal
  FROM flows
  WHERE flow_end >= fromUnixTimestamp64Milli({history_from:Int64}, 'UTC')
    AND flow_end < fromUnixTimestamp64Milli({recent_to:Int64}, 'UTC')
)`;

export const HISTORY_PLACEHOLDER = '{{history}}';

export function expandHistory(sql: string, mode: RunMode): string {
  return sql.split(HISTORY_PLACEHOLDER).join(mode === 'scheduled' ? SCHEDULED : BACKFILL);
}
