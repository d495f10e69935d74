-- Threat intel, stage 1: the distinct external addresses that exchanged flows with an internal host
-- in this window, in either direction. The detector matches them against the indicator lists in
-- TypeScript (ThreatIntel.lookup: one map probe per prefix length, whatever the size of the lists),
-- which keeps tens of thousands of indicators out of the query text and its parameters, and then asks
-- evidence.sql about the matches only.
--
-- Parameters: {max_addresses:UInt32} the bound of the answer (the detector logs when it is reached).
-- Columns: address.
SELECT address
FROM
(
    SELECT dst_addr AS address FROM {{flows}} WHERE in_window = 1 AND src_internal = 1 AND dst_internal = 0
    UNION ALL
    SELECT src_addr AS address FROM {{flows}} WHERE in_window = 1 AND src_internal = 0 AND dst_internal = 1
)
GROUP BY address
LIMIT {max_addresses:UInt32}
