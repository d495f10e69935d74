-- Exfiltration, stage 2b: the prevalence of each candidate peer, i.e. how many internal hosts
-- exchanged traffic with it (either direction, any port) over the history and the lookback. RITA
-- scores a destination that ≤ 2 % of internal hosts talk to as rare and one that ≥ 50 % talk to as
-- common; counting every internal host of the history would scan all of it, so the detector compares
-- an absolute count of hosts (the `popularHosts` parameter) instead.
--
-- The history placeholder: see baseline.sql. Parameters: {peers:Array(IPv6)}.
-- Columns: peer, hosts (distinct internal hosts), sample_hosts (up to 5).
SELECT peer, uniqExact(host) AS hosts, groupUniqArray(5)(host) AS sample_hosts
FROM
(
    SELECT dst_addr AS peer, src_addr AS host
    FROM {{history}}
    WHERE dst_addr IN {peers:Array(IPv6)} AND src_internal = 1
    UNION ALL
    SELECT src_addr AS peer, dst_addr AS host
    FROM {{history}}
    WHERE src_addr IN {peers:Array(IPv6)} AND dst_internal = 1
)
GROUP BY peer
