-- Exfiltration, stage 1: internal hosts that sent a large volume to one external address within the
-- lookback (default one hour), the candidates that stage 2 (baseline.sql, prevalence.sql) judges
-- against the host's own history and the rarity of the destination.
--
-- Every flow between an internal host and an external peer is oriented to (host, peer): outbound
-- bytes are a uniflow record's bytes from host to peer, or a biflow record's reverse bytes when the
-- peer was its source (RFC 5103), and inbound the other way round. Records are summed per 5-tuple
-- first (a long upload arrives as several active-timeout records, and a uniflow conversation as two
-- records; both are one connection), then per pair. A download (bytes inbound) and a symmetric
-- stream (a call, a VPN carrying both ways) fail the outbound share test below.
--
-- Parameters: {min_bytes:UInt64} outbound bytes of the pair in the lookback (the smallest threshold
-- of the detector; bytes are already scaled by the sampling rate); {min_out_in_ratio:Float64}
-- outbound bytes at least this many times the inbound ones; {chunk_min_bytes:UInt64} a connection
-- carrying at least this much outbound counts as a chunk (T1030 evidence); {max_candidates:UInt32}.
-- Columns: host, peer, out_bytes, in_bytes, out_packets, in_packets (context), new_flows, new_bytes,
-- new_packets (this window, both directions), first_seen, last_seen, connections, chunks, chunk_avg,
-- chunk_sd (outbound bytes per chunk), served_out_bytes (outbound bytes of connections in which the
-- host had the lower port: it served the peer), peer_ports, protocols, rate (largest sampling rate),
-- exporters, host_out_bytes (the host's outbound bytes to every external peer in the lookback),
-- host_peers (external peers the host sent data to).
SELECT *
FROM
(
    SELECT
        host,
        peer,
        sum(c_out) AS out_bytes,
        sum(c_in) AS in_bytes,
        sum(c_out_packets) AS out_packets,
        sum(c_in_packets) AS in_packets,
        sum(c_new_flows) AS new_flows,
        sum(c_new_bytes) AS new_bytes,
        sum(c_new_packets) AS new_packets,
        min(c_first) AS first_seen,
        max(c_last) AS last_seen,
        count() AS connections,
        countIf(c_out >= {chunk_min_bytes:UInt64}) AS chunks,
        avgIf(c_out, c_out >= {chunk_min_bytes:UInt64}) AS chunk_avg,
        stddevPopIf(c_out, c_out >= {chunk_min_bytes:UInt64}) AS chunk_sd,
        sumIf(c_out, host_port < peer_port) AS served_out_bytes,
        arraySort(groupUniqArrayIf(10)(peer_port, c_out > 0 AND peer_port <= host_port)) AS peer_ports,
        arraySort(groupUniqArray(4)(proto)) AS protocols,
        max(c_rate) AS rate,
        groupUniqArrayArray(4)(c_exporters) AS exporters,
        sum(sum(c_out)) OVER (PARTITION BY host) AS host_out_bytes,
        countIf(c_out > 0) > 0 AS has_out,
        sum(toUInt32(has_out)) OVER (PARTITION BY host) AS host_peers
    FROM
    (
        SELECT
            host, peer, proto, host_port, peer_port,
            sum(o_bytes) AS c_out,
            sum(i_bytes) AS c_in,
            sum(o_packets) AS c_out_packets,
            sum(i_packets) AS c_in_packets,
            countIf(in_window = 1) AS c_new_flows,
            sumIf(o_bytes + i_bytes, in_window = 1) AS c_new_bytes,
            sumIf(o_packets + i_packets, in_window = 1) AS c_new_packets,
            min(flow_start) AS c_first,
            max(flow_end) AS c_last,
            max(sampling_rate) AS c_rate,
            groupUniqArray(4)(exporter_address) AS c_exporters
        FROM
        (
            SELECT src_addr AS host, dst_addr AS peer, proto, src_port AS host_port, dst_port AS peer_port,
                   bytes AS o_bytes, reverse_bytes AS i_bytes, packets AS o_packets, reverse_packets AS i_packets,
                   in_window, flow_start, flow_end, sampling_rate, exporter_address
            FROM {{flows}}
            WHERE src_internal = 1 AND dst_internal = 0
            UNION ALL
            SELECT dst_addr AS host, src_addr AS peer, proto, dst_port AS host_port, src_port AS peer_port,
                   reverse_bytes AS o_bytes, bytes AS i_bytes, reverse_packets AS o_packets, packets AS i_packets,
                   in_window, flow_start, flow_end, sampling_rate, exporter_address
            FROM {{flows}}
            WHERE src_internal = 0 AND dst_internal = 1
        )
        GROUP BY host, peer, proto, host_port, peer_port
    )
    GROUP BY host, peer
)
WHERE new_flows > 0
  AND out_bytes >= {min_bytes:UInt64}
  AND out_bytes >= {min_out_in_ratio:Float64} * in_bytes
ORDER BY out_bytes DESC
LIMIT {max_candidates:UInt32}
