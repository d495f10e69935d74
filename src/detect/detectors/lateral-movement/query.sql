-- Lateral movement fan-out: one internal host opening admin protocols (SMB, RDP, WinRM, SSH, RPC) to
-- many internal hosts it has not talked to that way before.
--
-- Connections first, as in brute-force: the records of one TCP connection (two uniflow records or one
-- biflow record, and any active-timeout splits) summed per (client, server, client port, service
-- port), client and server both internal. A connection counts when the client acknowledged the
-- server (a handshake completed: failed SYNs are a sweep, see horizontal-sweep), the server sent
-- something back (or the export is sampled), and both directions carry at least
-- {min_connection_bytes:UInt64} (scaled) bytes: more than a bare connect or a refused session setup.
--
-- An edge (client, server, port) is new unless the client opened that port of that server in the
-- baseline: the {baseline_ms:Int64} before the context, read from the flows table itself (by flow end;
-- receive time bounds the partitions read, an hour of exporter clock skew allowed). A file server or a
-- domain controller is contacted by many clients (fan-in: one edge per client); a patch or backup
-- server talks to the same hosts every day (its edges are in the baseline).
--
-- Per client over the whole context: distinct new destinations (threshold divided by the sampling
-- rate, down to a floor), per service, and the SMB edges whose uploads reach {transfer_bytes:UInt64}
-- (lateral tool transfer). Reported when some of its records are new in this window.
--
-- Parameters: {svc_ports:Array(UInt16)}, per port {svc_index:Array(UInt16)}; {smb_ports:Array(UInt16)};
-- {min_connection_bytes:UInt64}, {baseline_ms:Int64}, {min_new_hosts:UInt32},
-- {min_new_hosts_sampled:UInt32}, {transfer_bytes:UInt64}.
-- Columns: src, new_hosts, service_stats ([service, new hosts]), hosts_sample (up to 50 new
-- destinations, most bytes first), transfers (up to 20 [dst, bytes uploaded] over SMB), known_edges
-- (the source's edges in the baseline; the baseline read stops at a million edges), connections, bytes_up, bytes_down, ports,
-- first_seen, last_seen, new_flows/new_bytes/new_packets (this window), rate, threshold, exporters.
WITH
conns AS
(
    SELECT
        client,
        server,
        cport,
        port,
        {svc_index:Array(UInt16)}[indexOf({svc_ports:Array(UInt16)}, port)] AS svc,
        sum(up_b) AS up_bytes,
        sum(down_b) AS down_bytes,
        sum(down_p) AS down_packets,
        groupBitOr(cflags) AS client_flags,
        min(fs) AS started,
        max(fe) AS ended,
        max(sampling_rate) AS rate,
        countIf(in_window = 1) AS conn_new_flows,
        sumIf(up_b + down_b, in_window = 1) AS conn_new_bytes,
        sumIf(up_p + down_p, in_window = 1) AS conn_new_packets,
        groupUniqArray(4)(exporter_address) AS conn_exporters
    FROM
    (
        SELECT src_addr AS client, dst_addr AS server, src_port AS cport, dst_port AS port,
               bytes AS up_b, packets AS up_p, reverse_bytes AS down_b, reverse_packets AS down_p,
               tcp_flags AS cflags, flow_start AS fs, flow_end AS fe, sampling_rate, in_window, exporter_address
        FROM {{flows}}
        WHERE proto = 6 AND src_internal = 1 AND dst_internal = 1 AND src_addr != dst_addr
          AND has({svc_ports:Array(UInt16)}, dst_port) AND NOT has({svc_ports:Array(UInt16)}, src_port)
        UNION ALL
        SELECT dst_addr, src_addr, dst_port, src_port,
               reverse_bytes, reverse_packets, bytes, packets,
               toUInt16(0), flow_start, flow_end, sampling_rate, in_window, exporter_address
        FROM {{flows}}
        WHERE proto = 6 AND src_internal = 1 AND dst_internal = 1 AND src_addr != dst_addr
          AND has({svc_ports:Array(UInt16)}, src_port) AND NOT has({svc_ports:Array(UInt16)}, dst_port)
    )
    GROUP BY client, server, cport, port
    HAVING bitAnd(client_flags, 0x10) != 0
       AND (down_packets > 0 OR rate > 1)
       AND up_bytes + down_bytes >= {min_connection_bytes:UInt64}
),
edges AS
(
    SELECT
        client,
        server,
        port,
        any(svc) AS edge_svc,
        count() AS edge_connections,
        sum(up_bytes) AS edge_up,
        sum(down_bytes) AS edge_down,
        min(started) AS edge_first,
        max(ended) AS edge_last,
        sum(conn_new_flows) AS edge_new_flows,
        sum(conn_new_bytes) AS edge_new_bytes,
        sum(conn_new_packets) AS edge_new_packets,
        max(rate) AS edge_rate,
        arrayDistinct(flatten(groupArray(conn_exporters))) AS edge_exporters
    FROM conns
    GROUP BY client, server, port
),
candidates AS
(
    -- Sources with enough destinations to matter even at the sampled floor: only their baseline is read.
    SELECT client FROM edges GROUP BY client HAVING uniqExact(server) >= {min_new_hosts_sampled:UInt32}
),
known AS
(
    SELECT DISTINCT src_addr, dst_addr, dst_port
    FROM flows
    WHERE time_received >= toDateTime(intDiv({context_from:Int64} - {baseline_ms:Int64}, 1000) - 3600, 'UTC')
      AND flow_end >= fromUnixTimestamp64Milli({context_from:Int64} - {baseline_ms:Int64}, 'UTC')
      AND flow_end < fromUnixTimestamp64Milli({context_from:Int64}, 'UTC')
      AND proto = 6
      AND has({svc_ports:Array(UInt16)}, dst_port)
      AND src_addr IN (SELECT client FROM candidates)
    LIMIT 1000000
),
known_counts AS
(
    SELECT src_addr AS client, toUInt64(count()) AS known_edges FROM known GROUP BY src_addr
),
fresh AS
(
    SELECT *
    FROM edges
    WHERE client IN (SELECT client FROM candidates)
      AND (client, server, port) NOT IN (SELECT src_addr, dst_addr, dst_port FROM known)
),
per_service AS
(
    SELECT client, arraySort(groupArray((edge_svc, svc_hosts))) AS service_stats
    FROM (SELECT client, edge_svc, uniqExact(server) AS svc_hosts FROM fresh GROUP BY client, edge_svc)
    GROUP BY client
),
per_source AS
(
    SELECT
        client,
        uniqExact(server) AS new_hosts,
        arraySlice(arrayReverseSort(x -> x.2, groupArray((server, edge_up + edge_down))), 1, 200) AS by_bytes,
        arraySlice(arrayReverseSort(x -> x.2,
            groupArrayIf((server, edge_up), has({smb_ports:Array(UInt16)}, port) AND edge_up >= {transfer_bytes:UInt64})), 1, 20) AS transfers,
        sum(edge_connections) AS connections,
        sum(edge_up) AS bytes_up,
        sum(edge_down) AS bytes_down,
        arraySort(groupUniqArray(16)(port)) AS ports,
        min(edge_first) AS first_seen,
        max(edge_last) AS last_seen,
        sum(edge_new_flows) AS new_flows,
        sum(edge_new_bytes) AS new_bytes,
        sum(edge_new_packets) AS new_packets,
        max(edge_rate) AS rate,
        arrayDistinct(flatten(groupArray(edge_exporters))) AS exporters,
        greatest({min_new_hosts_sampled:UInt32}, toUInt32(ceil({min_new_hosts:UInt32} / greatest(rate, 1)))) AS threshold
    FROM fresh
    GROUP BY client
    HAVING new_flows > 0 AND new_hosts >= threshold
)
SELECT
    p.client AS src,
    p.new_hosts AS new_hosts,
    s.service_stats AS service_stats,
    arraySlice(arrayDistinct(arrayMap(x -> x.1, p.by_bytes)), 1, 50) AS hosts_sample,
    p.transfers AS transfers,
    k.known_edges AS known_edges,
    p.connections AS connections,
    p.bytes_up AS bytes_up,
    p.bytes_down AS bytes_down,
    p.ports AS ports,
    p.first_seen AS first_seen,
    p.last_seen AS last_seen,
    p.new_flows AS new_flows,
    p.new_bytes AS new_bytes,
    p.new_packets AS new_packets,
    p.rate AS rate,
    p.threshold AS threshold,
    p.exporters AS exporters
FROM per_source AS p
LEFT JOIN known_counts AS k ON k.client = p.client
LEFT JOIN per_service AS s ON s.client = p.client
ORDER BY p.new_hosts DESC
LIMIT 1000
