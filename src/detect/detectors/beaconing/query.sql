-- C2 beaconing: per internal client and external server, the start times and request sizes of its
-- connections over the context (24 h by default), for a RITA-style score computed in detector.ts
-- (after RITA v5 analysis/beacons.go).
--
-- A connection is not a flow record. Records are grouped by their unordered 5-tuple (both directions of
-- a uniflow export land in one group) and sorted by start; a record opens a new connection only if it
-- starts more than {join_gap_ms} after the previous records ended AND it is not a continuation: a TCP
-- record without SYN, or a record after one that ended by active timeout (IPFIX flowEndReason 2). So a
-- long connection that the exporter split into regular records is one connection, never a beacon, while
-- distinct source ports are distinct connections.
--
-- The client is the initiator: a biflow record's source (RFC 5103); for TCP, the side whose first record
-- carries SYN and starts strictly before the other side's (SYN before SYN-ACK); else the side with the
-- higher port; with equal ports, the internal side.
--
-- Parameters: {join_gap_ms:Int64} silence that separates two connections of one 5-tuple;
-- {min_connections:UInt32} connections per pair, divided by the sampling rate down to
-- {min_connections_floor:UInt32}; {max_connections:UInt32} latest connections per pair returned for
-- scoring; {max_pairs:UInt32} pairs returned.
-- Columns: client, server, connections (context), latest (up to max_connections (-start_ms, client bytes)
-- tuples, latest first), first_ms, last_ms, hours (distinct clock hours with a connection), ports,
-- protos, new_flows/new_bytes/new_packets (records new in this window), rate (sampling), exporters,
-- server_clients (internal clients of this server in the context), internal_clients (internal clients
-- of any external server), dataset_from, dataset_to (first and last connection of any such pair, ms).
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
    WHERE proto IN (6, 17) AND src_internal != dst_internal
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
        if(client_is_a = 1, b_port, a_port) AS server_port,
        if(client_is_a = 1, a_int, b_int) AS client_internal,
        if(client_is_a = 1, a_bytes, b_bytes) AS up_bytes,
        ip_proto, start_ms, end_ms, new_records, new_record_bytes, new_record_packets, conn_rate, conn_exporters
    FROM conns
),
pairs AS
(
    SELECT client, server,
        count() AS connections,
        groupArraySorted({max_connections:UInt32})(tuple(-start_ms, up_bytes)) AS latest,
        min(start_ms) AS first_ms,
        max(end_ms) AS last_ms,
        uniqExact(intDiv(start_ms, 3600000)) AS hours,
        arraySort(groupUniqArray(10)(server_port)) AS ports,
        arraySort(groupUniqArray(2)(ip_proto)) AS protos,
        sum(new_records) AS new_flows,
        sum(new_record_bytes) AS new_bytes,
        sum(new_record_packets) AS new_packets,
        max(conn_rate) AS rate,
        groupUniqArrayArray(4)(conn_exporters) AS exporters
    FROM oriented
    WHERE client_internal = 1
    GROUP BY client, server
)
SELECT *
FROM
(
    SELECT *,
        count() OVER (PARTITION BY server) AS server_clients,
        uniqExact(client) OVER () AS internal_clients,
        min(first_ms) OVER () AS dataset_from,
        max(last_ms) OVER () AS dataset_to
    FROM pairs
)
WHERE new_flows > 0
  AND connections >= greatest({min_connections_floor:UInt32}, toUInt32(ceil({min_connections:UInt32} / greatest(rate, 1))))
ORDER BY hours DESC, connections DESC
LIMIT {max_pairs:UInt32}
