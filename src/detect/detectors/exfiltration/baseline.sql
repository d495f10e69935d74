-- Exfiltration, stage 2a: the candidate hosts' outbound bytes to external peers per hour of the
-- history before the lookback, the baseline the current hour is judged against (Slips judges a
-- profile's hourly traffic by a robust z-score on log1p bytes: median and MAD over its past windows).
-- Only hours in which the host sent something count as points: an idle host's empty nights would
-- otherwise make every working hour an outlier.
--
-- The history placeholder stands for the stored flows of [history_from, recent_to) with `hour`, `before_context`
-- (1 before the lookback, i.e. history) and `src_internal`/`dst_internal`; see history-source.ts.
-- Parameters: {hosts:Array(IPv6)} the candidate hosts, {peers:Array(IPv6)} their candidate peers
-- (their bytes are also kept per peer: has the host sent this much to this peer before?),
-- {max_rows:UInt32}.
-- Columns: host, hour, peer (a candidate peer, or :: for every other external peer), out_bytes.
SELECT host, hour, peer, sum(o) AS out_bytes
FROM
(
    SELECT src_addr AS host, if(has({peers:Array(IPv6)}, dst_addr), dst_addr, toIPv6('::')) AS peer, hour,
           bytes AS o
    FROM {{history}}
    WHERE before_context = 1 AND src_addr IN {hosts:Array(IPv6)} AND dst_internal = 0
    UNION ALL
    SELECT dst_addr AS host, if(has({peers:Array(IPv6)}, src_addr), src_addr, toIPv6('::')) AS peer, hour,
           reverse_bytes AS o
    FROM {{history}}
    WHERE before_context = 1 AND dst_addr IN {hosts:Array(IPv6)} AND src_internal = 0 AND reverse_bytes > 0
)
GROUP BY host, hour, peer
HAVING out_bytes > 0
ORDER BY host, hour
LIMIT {max_rows:UInt32}
