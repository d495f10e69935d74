-- Crypto-mining pool traffic: internal hosts holding TCP connections to a mining pool. A pool is an
-- address on a mining indicator list (stage 1) or in the configured pool ranges; otherwise a
-- connection to a stratum port counts only when it also looks like mining: long-lived (the miner
-- keeps one session open for hours), packets both ways (jobs down, shares up) and little volume per
-- minute. Ports alone are noise (8888 and 9999 are common development and proxy ports; Elastic
-- deprecated its port-only rules for that reason).
--
-- Records are oriented to (client = internal host, server = external address, server port), summed
-- per connection (client port) so that active-timeout splits and the two directions of a uniflow
-- export are one connection, whose duration runs from its first record's start to its last record's
-- end; biflow reverse counters count as the other direction (RFC 5103). Packets and bytes are
-- already scaled by the sampling rate; durations need no scaling.
--
-- Parameters: {ports:Array(UInt16)} stratum ports; {pool_lo:Array(IPv6)}, {pool_hi:Array(IPv6)}
-- the configured pool ranges; {listed:Array(IPv6)} addresses found on mining lists by stage 1;
-- {min_duration_seconds:Float64}, {max_bytes_per_minute:Float64} for port-only candidates.
-- Columns: client, server, server_port, listed, connections, two_way, longest_seconds,
-- total_seconds, bytes_up, bytes_down, packets_up, packets_down, bytes_per_minute, new_flows,
-- new_bytes, new_packets (this window), first_seen, last_seen, rate (sampling), exporters.
SELECT
    client,
    server,
    server_port,
    max(c_listed) AS listed,
    count() AS connections,
    countIf(c_packets_up >= 2 AND c_packets_down >= 2) AS two_way,
    max(c_seconds) AS longest_seconds,
    sum(c_seconds) AS total_seconds,
    sum(c_bytes_up) AS bytes_up,
    sum(c_bytes_down) AS bytes_down,
    sum(c_packets_up) AS packets_up,
    sum(c_packets_down) AS packets_down,
    (bytes_up + bytes_down) * 60 / greatest(60, total_seconds) AS bytes_per_minute,
    sum(c_new_flows) AS new_flows,
    sum(c_new_bytes) AS new_bytes,
    sum(c_new_packets) AS new_packets,
    min(c_first) AS first_seen,
    max(c_last) AS last_seen,
    max(c_rate) AS rate,
    groupUniqArrayArray(4)(c_exporters) AS exporters
FROM
(
    SELECT
        client, server, server_port, client_port,
        max(is_listed) AS c_listed,
        sum(up_b) AS c_bytes_up,
        sum(down_b) AS c_bytes_down,
        sum(up_p) AS c_packets_up,
        sum(down_p) AS c_packets_down,
        min(flow_start) AS c_first,
        max(flow_end) AS c_last,
        dateDiff('millisecond', c_first, c_last) / 1000 AS c_seconds,
        countIf(in_window = 1) AS c_new_flows,
        sumIf(up_b + down_b, in_window = 1) AS c_new_bytes,
        sumIf(up_p + down_p, in_window = 1) AS c_new_packets,
        max(sampling_rate) AS c_rate,
        groupUniqArray(4)(exporter_address) AS c_exporters
    FROM
    (
        SELECT src_addr AS client, dst_addr AS server, dst_port AS server_port, src_port AS client_port,
               toUInt8(has({listed:Array(IPv6)}, dst_addr)
                   OR arrayExists((lo, hi) -> dst_addr >= lo AND dst_addr <= hi,
                                  {pool_lo:Array(IPv6)}, {pool_hi:Array(IPv6)})) AS is_listed,
               bytes AS up_b, packets AS up_p, reverse_bytes AS down_b, reverse_packets AS down_p,
               in_window, flow_start, flow_end, sampling_rate, exporter_address
        FROM {{flows}}
        WHERE proto = 6 AND src_internal = 1 AND dst_internal = 0
          AND (has({ports:Array(UInt16)}, dst_port) OR has({listed:Array(IPv6)}, dst_addr)
               OR arrayExists((lo, hi) -> dst_addr >= lo AND dst_addr <= hi,
                              {pool_lo:Array(IPv6)}, {pool_hi:Array(IPv6)}))
        UNION ALL
        SELECT dst_addr AS client, src_addr AS server, src_port AS server_port, dst_port AS client_port,
               toUInt8(has({listed:Array(IPv6)}, src_addr)
                   OR arrayExists((lo, hi) -> src_addr >= lo AND src_addr <= hi,
                                  {pool_lo:Array(IPv6)}, {pool_hi:Array(IPv6)})) AS is_listed,
               reverse_bytes AS up_b, reverse_packets AS up_p, bytes AS down_b, packets AS down_p,
               in_window, flow_start, flow_end, sampling_rate, exporter_address
        FROM {{flows}}
        WHERE proto = 6 AND src_internal = 0 AND dst_internal = 1
          AND (has({ports:Array(UInt16)}, src_port) OR has({listed:Array(IPv6)}, src_addr)
               OR arrayExists((lo, hi) -> src_addr >= lo AND src_addr <= hi,
                              {pool_lo:Array(IPv6)}, {pool_hi:Array(IPv6)}))
    )
    GROUP BY client, server, server_port, client_port
)
GROUP BY client, server, server_port
HAVING new_flows > 0
   AND (listed = 1
        OR (two_way > 0 AND longest_seconds >= {min_duration_seconds:Float64}
            AND bytes_per_minute <= {max_bytes_per_minute:Float64}))
ORDER BY listed DESC, longest_seconds DESC
LIMIT 1000
