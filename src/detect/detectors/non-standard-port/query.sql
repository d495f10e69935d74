-- Non-standard port: an internal host's TCP session with an external server on a port that is not a
-- known service port ({allowed_ports:Array(UInt16)}), which lasted and carried data, or moved bulk.
-- Flows carry no payload: this cannot see which protocol runs on the port, only that something
-- substantial ran on a port where no common service lives. Ports alone are noise (Elastic deprecated
-- its port-only rules), so a session counts only when
--   * both directions carried packets (a lone direction, such as the return half of a session to 443
--     routed past the exporter, is never a session), and it lasted {min_duration_ms:Int64} with
--     {min_bytes:UInt64} in both directions together, or moved {bulk_bytes:UInt64};
--   * its client is known: a biflow record's source (RFC 5103); else the side whose first record
--     carries SYN and starts strictly first (uniflow exporters that time each direction); else the side
--     with the higher port, which must then be ≥ 1024 (ephemeral-looking). Both directions of a session
--     are one connection here, so the return direction of a session to 443 (destination port = the
--     client's ephemeral port) is part of that session, not a session to a high port.
-- and a server port is skipped when
--   * it is dynamic (≥ 49152) and {ignore_dynamic:UInt8} = 1 (P2P and ephemeral listeners);
--   * the client also talked to the same server on 21 or 990 in the context (passive FTP data);
--   * the client talks to {p2p_servers:UInt32} or more external servers on non-standard ports (divided by
--     the sampling rate, down to {p2p_servers_floor:UInt32}): P2P, games, conferencing fall-backs.
-- UDP is excluded: RTP, QUIC, STUN and game traffic live on arbitrary high ports.
--
-- Records are joined into connections as in long-connection (same 5-tuple, consecutive records; a TCP
-- record without SYN continues the connection); {join_gap_ms:Int64} separates reuses of a 5-tuple.
-- Columns, per client, server and server port: connections (substantial ones), longest_ms, first_ms,
-- last_ms, orientations (how the client was told: biflow, handshake, ports), total_up_bytes,
-- total_down_bytes, total_up_packets, total_down_packets, client_ports, odd_port_servers (of the
-- client), new_flows/new_bytes/new_packets (records of those connections new in this window), rate, exporters.
WITH
records AS
(
    SELECT
        (src_addr, src_port) <= (dst_addr, dst_port) AS from_a,
        if(from_a, src_addr, dst_addr) AS a_addr,
        if(from_a, src_port, dst_port) AS a_port,
        if(from_a, dst_addr, src_addr) AS b_addr,
        if(from_a, dst_port, src_port) AS b_port,
        proto AS ip_proto,
        if(from_a, src_internal, dst_internal) AS a_internal,
        if(from_a, dst_internal, src_internal) AS b_internal,
        exporter_address AS exporter,
        -- 1 start, 2 end, 3 sent by a, 4 SYN, 5 end reason, 6 bytes, 7 packets, 8 reverse bytes,
        -- 9 reverse packets, 10 new in this window, 11 sampling rate
        tuple(toUnixTimestamp64Milli(flow_start), toUnixTimestamp64Milli(flow_end), toUInt8(from_a),
              toUInt8(bitAnd(tcp_flags, 0x02) != 0), end_reason, bytes, packets, reverse_bytes,
              reverse_packets, in_window, sampling_rate) AS rec
    FROM {{flows}}
    WHERE proto = 6 AND src_internal != dst_internal
),
tuples AS
(
    SELECT a_addr, a_port, b_addr, b_port, ip_proto,
           any(a_internal) AS a_int, any(b_internal) AS b_int,
           groupUniqArray(4)(exporter) AS exps,
           arraySort(groupArray(8192)(rec)) AS recs
    FROM records
    GROUP BY a_addr, a_port, b_addr, b_port, ip_proto
),
split AS
(
    SELECT a_addr, a_port, b_addr, b_port, ip_proto, a_int, b_int, exps, recs,
        arrayCumSum(arrayMap(i -> toUInt32(i = 1 OR (
            -- the previous two records cover both directions of a uniflow export
            recs[i].1 - greatest(recs[i - 1].2, if(i > 2, recs[i - 2].2, 0)) > {join_gap_ms:Int64}
            AND NOT (ip_proto = 6 AND recs[i].4 = 0)
            AND if(i > 2 AND recs[i - 2].2 > recs[i - 1].2, recs[i - 2].5, recs[i - 1].5) != 2
        )), arrayEnumerate(recs))) AS conn_ids
    FROM tuples
),
conns AS
(
    SELECT a_addr, a_port, b_addr, b_port, ip_proto, a_int, b_int, conn_id,
        any(exps) AS conn_exporters,
        min(r.1) AS start_ms,
        max(r.2) AS end_ms,
        countIf(r.10 = 1) AS new_records,
        sumIf(r.6 + r.8, r.10 = 1) AS new_record_bytes,
        sumIf(r.7 + r.9, r.10 = 1) AS new_record_packets,
        sumIf(r.6, r.3 = 1) + sumIf(r.8, r.3 = 0) AS a_bytes,
        sumIf(r.6, r.3 = 0) + sumIf(r.8, r.3 = 1) AS b_bytes,
        countIf(r.8 > 0 OR r.9 > 0) AS biflow_records,
        maxIf(r.3, r.8 > 0 OR r.9 > 0) AS biflow_from_a,
        countIf(r.3 = 1) AS a_records,
        countIf(r.3 = 0) AS b_records,
        minIf(r.1, r.3 = 1) AS a_first,
        minIf(r.1, r.3 = 0) AS b_first,
        argMinIf(r.4, r.1, r.3 = 1) AS a_first_syn,
        argMinIf(r.4, r.1, r.3 = 0) AS b_first_syn,
        count() AS record_count,
        sumIf(r.7, r.3 = 1) + sumIf(r.9, r.3 = 0) AS a_packets,
        sumIf(r.7, r.3 = 0) + sumIf(r.9, r.3 = 1) AS b_packets,
        max(r.11) AS conn_rate
    FROM split
    ARRAY JOIN recs AS r, conn_ids AS conn_id
    GROUP BY a_addr, a_port, b_addr, b_port, ip_proto, a_int, b_int, conn_id
),
oriented AS
(
    SELECT
        multiIf(
            a_records > 0 AND b_records > 0 AND a_first_syn = 1 AND a_first < b_first, 1,
            a_records > 0 AND b_records > 0 AND b_first_syn = 1 AND b_first < a_first, 0,
            2) AS handshake_from_a,
        multiIf(biflow_records > 0, biflow_from_a, handshake_from_a != 2, handshake_from_a,
            toUInt8(a_port > b_port)) AS initiator,
        multiIf(biflow_records > 0, 'biflow', handshake_from_a != 2, 'handshake', 'ports') AS orientation,
        if(initiator = 1, a_addr, b_addr) AS client,
        if(initiator = 1, b_addr, a_addr) AS server,
        if(initiator = 1, a_port, b_port) AS client_port,
        if(initiator = 1, b_port, a_port) AS server_port,
        if(initiator = 1, a_int, b_int) AS client_internal,
        if(initiator = 1, a_bytes, b_bytes) AS up_bytes,
        if(initiator = 1, b_bytes, a_bytes) AS down_bytes,
        if(initiator = 1, a_packets, b_packets) AS up_packets,
        if(initiator = 1, b_packets, a_packets) AS down_packets,
        toUInt8(up_packets >= 2 AND down_packets >= 2
            AND ((end_ms - start_ms >= {min_duration_ms:Int64} AND up_bytes + down_bytes >= {min_bytes:UInt64})
                 OR up_bytes + down_bytes >= {bulk_bytes:UInt64})) AS substantial,
        start_ms, end_ms, new_records, new_record_bytes, new_record_packets, conn_rate, conn_exporters
    FROM conns
    -- Without a biflow record or a handshake that shows who spoke first, the higher port is the client's
    -- (ephemeral) one; equal ports say nothing.
    WHERE a_port != b_port OR orientation != 'ports'
),
per_port AS
(
    SELECT client, server, server_port,
        toUInt8(has({allowed_ports:Array(UInt16)}, server_port)
                OR ({ignore_dynamic:UInt8} = 1 AND server_port >= 49152)) AS allowed,
        countIf(substantial = 1) AS connections,
        maxIf(end_ms - start_ms, substantial = 1) AS longest_ms,
        minIf(start_ms, substantial = 1) AS first_ms,
        maxIf(end_ms, substantial = 1) AS last_ms,
        sumIf(up_bytes, substantial = 1) AS total_up_bytes,
        sumIf(down_bytes, substantial = 1) AS total_down_bytes,
        sumIf(up_packets, substantial = 1) AS total_up_packets,
        sumIf(down_packets, substantial = 1) AS total_down_packets,
        arraySort(groupUniqArrayIf(10)(client_port, substantial = 1)) AS client_ports,
        groupUniqArrayIf(3)(orientation, substantial = 1) AS orientations,
        sumIf(new_records, substantial = 1) AS new_flows,
        sumIf(new_record_bytes, substantial = 1) AS new_bytes,
        sumIf(new_record_packets, substantial = 1) AS new_packets,
        max(conn_rate) AS rate,
        groupUniqArrayArray(4)(conn_exporters) AS exporters
    FROM oriented
    WHERE client_internal = 1 AND (orientation != 'ports' OR client_port >= 1024)
    GROUP BY client, server, server_port
)
SELECT *
FROM
(
    SELECT *,
        max(server_port IN (21, 990)) OVER (PARTITION BY client, server) AS ftp_control,
        uniqExactIf(server, allowed = 0 AND server_port NOT IN (21, 990)) OVER (PARTITION BY client) AS odd_port_servers,
        max(rate) OVER (PARTITION BY client) AS client_rate
    FROM per_port
)
WHERE allowed = 0
  AND connections > 0
  AND new_flows > 0
  AND ftp_control = 0
  AND odd_port_servers < greatest({p2p_servers_floor:UInt32}, toUInt32(ceil({p2p_servers:UInt32} / greatest(client_rate, 1))))
ORDER BY total_up_bytes + total_down_bytes DESC
LIMIT 1000
