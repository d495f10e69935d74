-- Exposed remote service: a remote-access service (RDP, SSH, VNC, Telnet, SMB, WinRM) of an internal
-- host that Internet sources reach with established connections that carry data.
--
-- The records of one TCP connection (two uniflow records, or one biflow record with reverse counters,
-- and any active-timeout splits) are summed per (client, server, client port, service port); the
-- client is the side whose destination port is a service port, and must be outside the internal
-- networks while the server is inside. A connection counts when
--   - the client acknowledged the server (ACK in its own direction: after a SYN-ACK; a refused or
--     unanswered SYN has none, so scanning is not exposure),
--   - the server sent something back (its own record, or reverse packets of a biflow); sampled
--     exports rarely carry both directions of one small connection, so with a sampling rate above 1
--     the client's ACK suffices,
--   - both directions together carry at least {min_bytes:UInt64} (scaled) bytes: a handshake and close,
--     an ACK probe or a banner grab stay below.
-- The lookback is long (an hour by default) so that the records of a long session split by active
-- timeouts are judged together. Per (server, service): the sources, the connections and their bytes,
-- reported when some of their records are new in this window.
--
-- Parameters: {svc_ports:Array(UInt16)} and per port {svc_index:Array(UInt16)} (service number);
-- {min_bytes:UInt64}.
-- Columns: dst, svc, ports, sources, source_stats (up to 20 [src, connections, bytes], most bytes
-- first), top_source, connections, bytes_to_server, bytes_from_server, longest_seconds, first_seen,
-- last_seen, new_flows/new_bytes/new_packets (this window), rate, exporters.
WITH conns AS
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
        WHERE proto = 6 AND src_internal = 0 AND dst_internal = 1
          AND has({svc_ports:Array(UInt16)}, dst_port) AND NOT has({svc_ports:Array(UInt16)}, src_port)
        UNION ALL
        SELECT dst_addr, src_addr, dst_port, src_port,
               reverse_bytes, reverse_packets, bytes, packets,
               toUInt16(0), flow_start, flow_end, sampling_rate, in_window, exporter_address
        FROM {{flows}}
        WHERE proto = 6 AND src_internal = 1 AND dst_internal = 0
          AND has({svc_ports:Array(UInt16)}, src_port) AND NOT has({svc_ports:Array(UInt16)}, dst_port)
    )
    GROUP BY client, server, cport, port
    HAVING bitAnd(client_flags, 0x10) != 0
       AND (down_packets > 0 OR rate > 1)
       AND up_bytes + down_bytes >= {min_bytes:UInt64}
),
per_source AS
(
    SELECT
        server,
        svc,
        client,
        count() AS src_connections,
        sum(up_bytes) AS src_up,
        sum(down_bytes) AS src_down,
        max(dateDiff('millisecond', started, ended)) / 1000 AS src_longest,
        min(started) AS src_first,
        max(ended) AS src_last,
        groupUniqArray(4)(port) AS src_ports,
        sum(conn_new_flows) AS src_new_flows,
        sum(conn_new_bytes) AS src_new_bytes,
        sum(conn_new_packets) AS src_new_packets,
        max(rate) AS src_rate,
        arrayDistinct(flatten(groupArray(conn_exporters))) AS src_exporters
    FROM conns
    GROUP BY server, svc, client
)
SELECT
    server AS dst,
    svc,
    arraySort(arrayDistinct(flatten(groupArray(src_ports)))) AS ports,
    count() AS sources,
    arraySlice(arrayReverseSort(x -> x.3, groupArray((client, src_connections, src_up + src_down))), 1, 20) AS source_stats,
    argMax(client, src_up + src_down) AS top_source,
    sum(src_connections) AS connections,
    sum(src_up) AS bytes_to_server,
    sum(src_down) AS bytes_from_server,
    max(src_longest) AS longest_seconds,
    min(src_first) AS first_seen,
    max(src_last) AS last_seen,
    sum(src_new_flows) AS new_flows,
    sum(src_new_bytes) AS new_bytes,
    sum(src_new_packets) AS new_packets,
    max(src_rate) AS rate,
    arrayDistinct(flatten(groupArray(src_exporters))) AS exporters
FROM per_source
GROUP BY server, svc
HAVING new_flows > 0
ORDER BY bytes_to_server + bytes_from_server DESC
LIMIT 1000
