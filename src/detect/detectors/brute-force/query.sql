-- Brute force: many short authentication attempts from one source to a login service, on one host
-- (password guessing) or on many (password spraying).
--
-- Connections first: the records of one TCP connection (both directions as two uniflow records, or
-- one biflow record with reverse counters, and any active-timeout splits) are summed per
-- (client, server, client port, service port). The client is the side whose destination port is a
-- service port. A connection is
--   an attempt  when the client acknowledged the server's SYN-ACK (ACK in its own direction: the
--               handshake completed; a refused or half-open SYN is a scan, not a login), the client's
--               SYN is among the records (not the tail of a long session), it sent at least the
--               service's least login payload (estimated as IP bytes minus 40 or 60 header bytes per
--               packet: an upper bound, TCP options inflate it), and both directions together stay
--               within the service's success size;
--   a session   when it is larger than that: for SSH, Slips reads a flow of more than 4290 bytes as a
--               successful login.
-- Sampled records carry neither reliable flags nor sizes for one connection: with a sampling rate
-- above 1 the SYN is not required and sizes are judged on the sampled packets themselves (bytes
-- divided by the rate, a lower bound of the connection's size); the login-payload floor is not applied.
--
-- Per (client, service) over the whole context: attempts, destinations, the spread of attempt sizes
-- (stddev / mean: automation repeats the same exchange) and sessions to an attempted host that started
-- after its first attempt (a likely successful login). Reported when some of its records are new in
-- this window and the attempts cross the threshold (divided by the sampling rate, down to a floor).
--
-- Parameters: {svc_ports:Array(UInt16)}, and per port {svc_index:Array(UInt16)} (service number),
-- {svc_min_payload:Array(UInt64)}, {svc_success_bytes:Array(UInt64)}; {min_attempts:UInt32},
-- {min_attempts_sampled:UInt32}.
-- Columns: src, svc, src_is_internal, attempts, hosts, host_stats (up to 20 [server, attempts], most
-- first), top_host, top_host_attempts, mean_attempt_bytes, size_cv, sessions (up to 5 [server, start,
-- bytes, seconds] after attempts), first_attempt, last_attempt, first_seen, last_seen, ports,
-- new_flows/new_bytes/new_packets (this window), rate, threshold, exporters.
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
        sum(up_p) AS up_packets,
        sum(down_b) AS down_bytes,
        groupBitOr(cflags) AS client_flags,
        min(fs) AS started,
        max(fe) AS ended,
        max(sampling_rate) AS rate,
        any(internal) AS client_internal,
        countIf(in_window = 1) AS conn_new_flows,
        sumIf(up_b + down_b, in_window = 1) AS conn_new_bytes,
        sumIf(up_p + down_p, in_window = 1) AS conn_new_packets,
        groupUniqArray(4)(exporter_address) AS conn_exporters,
        up_bytes + down_bytes AS total,
        if(rate > 1, total / rate, toFloat64(total)) AS judged_size,
        toInt64(up_bytes) - toInt64(up_packets) * if(client BETWEEN toIPv6('::ffff:0.0.0.0') AND toIPv6('::ffff:255.255.255.255'), 40, 60) AS client_payload,
        bitAnd(client_flags, 0x10) != 0 AS established,
        established
            AND (bitAnd(client_flags, 0x02) != 0 OR rate > 1)
            AND (rate > 1 OR client_payload >= toInt64({svc_min_payload:Array(UInt64)}[indexOf({svc_ports:Array(UInt16)}, port)]))
            AND judged_size <= {svc_success_bytes:Array(UInt64)}[indexOf({svc_ports:Array(UInt16)}, port)] AS is_attempt,
        established AND judged_size > {svc_success_bytes:Array(UInt64)}[indexOf({svc_ports:Array(UInt16)}, port)] AS is_session
    FROM
    (
        SELECT src_addr AS client, dst_addr AS server, src_port AS cport, dst_port AS port,
               bytes AS up_b, packets AS up_p, reverse_bytes AS down_b, reverse_packets AS down_p,
               tcp_flags AS cflags, flow_start AS fs, flow_end AS fe, sampling_rate, in_window,
               src_internal AS internal, exporter_address
        FROM {{flows}}
        WHERE proto = 6 AND has({svc_ports:Array(UInt16)}, dst_port) AND NOT has({svc_ports:Array(UInt16)}, src_port)
        UNION ALL
        SELECT dst_addr, src_addr, dst_port, src_port,
               reverse_bytes, reverse_packets, bytes, packets,
               toUInt16(0), flow_start, flow_end, sampling_rate, in_window,
               dst_internal, exporter_address
        FROM {{flows}}
        WHERE proto = 6 AND has({svc_ports:Array(UInt16)}, src_port) AND NOT has({svc_ports:Array(UInt16)}, dst_port)
    )
    GROUP BY client, server, cport, port
    HAVING is_attempt OR is_session
),
pairs AS
(
    SELECT
        client,
        server,
        svc,
        countIf(is_attempt) AS n_attempts,
        sumIf(total, is_attempt) AS attempt_bytes,
        sumIf(total * total, is_attempt) AS attempt_bytes_sq,
        minIf(started, is_attempt) AS pair_first_attempt,
        maxIf(ended, is_attempt) AS pair_last_attempt,
        arraySlice(arraySort(x -> x.2,
            arrayFilter(x -> x.2 >= pair_first_attempt,
                groupArrayIf(100)((server, started, total, dateDiff('millisecond', started, ended) / 1000), is_session))), 1, 5) AS pair_sessions,
        min(started) AS pair_first,
        max(ended) AS pair_last,
        groupUniqArray(4)(port) AS pair_ports,
        sum(conn_new_flows) AS pair_new_flows,
        sum(conn_new_bytes) AS pair_new_bytes,
        sum(conn_new_packets) AS pair_new_packets,
        max(rate) AS pair_rate,
        max(client_internal) AS pair_internal,
        arrayDistinct(flatten(groupArray(conn_exporters))) AS pair_exporters
    FROM conns
    GROUP BY client, server, svc
    HAVING n_attempts > 0
)
SELECT
    client AS src,
    svc,
    max(pair_internal) AS src_is_internal,
    sum(n_attempts) AS attempts,
    count() AS hosts,
    arraySlice(arrayReverseSort(x -> x.2, groupArray((server, n_attempts))), 1, 20) AS host_stats,
    argMax(server, n_attempts) AS top_host,
    max(n_attempts) AS top_host_attempts,
    sum(attempt_bytes) / attempts AS mean_attempt_bytes,
    if(mean_attempt_bytes > 0,
       sqrt(greatest(sum(attempt_bytes_sq) / attempts - mean_attempt_bytes * mean_attempt_bytes, 0)) / mean_attempt_bytes,
       0) AS size_cv,
    arraySlice(arraySort(x -> x.2, arrayFlatten(groupArray(pair_sessions))), 1, 5) AS sessions,
    min(pair_first_attempt) AS first_attempt,
    max(pair_last_attempt) AS last_attempt,
    min(pair_first) AS first_seen,
    max(pair_last) AS last_seen,
    arraySort(arrayDistinct(flatten(groupArray(pair_ports)))) AS ports,
    sum(pair_new_flows) AS new_flows,
    sum(pair_new_bytes) AS new_bytes,
    sum(pair_new_packets) AS new_packets,
    max(pair_rate) AS rate,
    greatest({min_attempts_sampled:UInt32}, toUInt32(ceil({min_attempts:UInt32} / greatest(rate, 1)))) AS threshold,
    arrayDistinct(flatten(groupArray(pair_exporters))) AS exporters
FROM pairs
GROUP BY client, svc
HAVING new_flows > 0 AND attempts >= threshold
ORDER BY attempts DESC
LIMIT 1000
