-- Crypto mining, stage 1: the distinct external addresses internal hosts opened or kept TCP
-- connections to in this window, to be matched against the mining-pool indicator lists in TypeScript
-- (ThreatIntel.lookup, category mining). Run only when indicator lists are loaded.
--
-- Parameters: {max_addresses:UInt32}. Columns: address.
SELECT dst_addr AS address
FROM {{flows}}
WHERE in_window = 1 AND proto = 6 AND src_internal = 1 AND dst_internal = 0
GROUP BY address
LIMIT {max_addresses:UInt32}
