-- Long connections: one TCP or UDP connection between an internal and an external host (or two
-- internal hosts, when {include_internal:UInt8} = 1) that lasts at least {min_duration_ms:Int64},
-- measured across the records the exporter split it into (active timeout). Reported while it has
-- records new in this window, so an ongoing connection is reported as soon as a record shows it has
-- crossed the minimum, and again (extending the finding) while it lasts.
--
-- Records are grouped by their unordered 5-tuple and sorted by start; a record continues the connection
-- when it starts within {join_gap_ms:Int64} of the previous records' end, or is a TCP record without
-- SYN (a TCP 5-tuple is one connection until a new handshake), or follows a record ended by active
-- timeout (IPFIX flowEndReason 2). The client is the initiator: a biflow record's source (RFC 5103);
-- for TCP the side whose first record carries SYN and starts strictly first; else the higher port;
-- with equal ports the internal side.
--
-- Durations are of one connection, not summed over parallel connections of a pair (RITA sums per pair;
-- a pair with 30 parallel one-hour connections is not a 30-hour tunnel). A connection older than the
-- context is measured from the context's start (started_before: its first record has no SYN).
--
-- Parameters: {min_duration_ms:Int64}, {join_gap_ms:Int64}, {include_internal:UInt8}.
-- Columns, per client, server, server port and protocol: connections (long ones), longest_ms,
-- first_ms, last_ms, records (joined), up_bytes/down_bytes/up_packets/down_packets (client→server and
-- back, long connections, context), client_ports, started_before, client_internal, server_internal,
-- new_flows/new_bytes/new_packets (records of those connections new in this window), rate, exporters.
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
    WHERE proto IN (6, 17)
      AND src_internal + dst_internal >= 1
      AND (src_internal != dst_internal OR {include_internal:UInt8} = 1)
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
        argMin(r.4, r.1) AS first_syn,
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
            biflow_records > 0, biflow_from_a,
            ip_proto = 6 AND a_records > 0 AND b_records > 0 AND a_first_syn = 1 AND a_first < b_first, 1,
            ip_proto = 6 AND a_records > 0 AND b_records > 0 AND b_first_syn = 1 AND b_first < a_first, 0,
            a_port != b_port, toUInt8(a_port > b_port),
            toUInt8(a_int >= b_int)) AS client_is_a,
        if(client_is_a = 1, a_addr, b_addr) AS client,
        if(client_is_a = 1, b_addr, a_addr) AS server,
        if(client_is_a = 1, a_port, b_port) AS client_port,
        if(client_is_a = 1, b_port, a_port) AS server_port,
        if(client_is_a = 1, a_int, b_int) AS client_internal,
        if(client_is_a = 1, b_int, a_int) AS server_internal,
        if(client_is_a = 1, a_bytes, b_bytes) AS up_bytes,
        if(client_is_a = 1, b_bytes, a_bytes) AS down_bytes,
        if(client_is_a = 1, a_packets, b_packets) AS up_packets,
        if(client_is_a = 1, b_packets, a_packets) AS down_packets,
        ip_proto, start_ms, end_ms, record_count, first_syn, new_records, new_record_bytes, new_record_packets,
        conn_rate, conn_exporters
    FROM conns
    WHERE end_ms - start_ms >= {min_duration_ms:Int64}
)
SELECT
    client,
    server,
    server_port,
    ip_proto,
    count() AS connections,
    max(end_ms - start_ms) AS longest_ms,
    min(start_ms) AS first_ms,
    max(end_ms) AS last_ms,
    sum(record_count) AS joined_records,
    sum(up_bytes) AS total_up_bytes,
    sum(down_bytes) AS total_down_bytes,
    sum(up_packets) AS total_up_packets,
    sum(down_packets) AS total_down_packets,
    arraySort(groupUniqArray(10)(client_port)) AS client_ports,
    max(ip_proto = 6 AND first_syn = 0) AS started_before,
    any(client_internal) AS client_is_internal,
    any(server_internal) AS server_is_internal,
    sum(new_records) AS new_flows,
    sum(new_record_bytes) AS new_bytes,
    sum(new_record_packets) AS new_packets,
    max(conn_rate) AS rate,
    groupUniqArrayArray(4)(conn_exporters) AS exporters
FROM oriented
GROUP BY client, server, server_port, ip_proto
HAVING new_flows > 0
ORDER BY longest_ms DESC
LIMIT 1000
