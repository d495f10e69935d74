-- Threat intel, stage 2: the conversations between internal hosts and the listed addresses found by
-- stage 1, per (internal host, listed address, who initiated), with what an analyst needs to tell an
-- established exchange from a blocked attempt.
--
-- Records are oriented to (internal, external) and summed per 5-tuple: a uniflow conversation is two
-- records, a long one several (active timeout). Per connection the initiator is, in this order: the
-- side that sent a SYN without ACK while the other did not (a probe or an attempt); the source of a
-- biflow record (RFC 5103: the reverse counters are the responder's); the side with the ephemeral
-- port when the other is below 1024; the side whose first record started first; the side with the
-- higher port. A TCP connection is established when the responder answered SYN-ACK and the initiator
-- ACKed (or, for a biflow record, the initiator ACKed and the responder sent packets; or a mid-stream
-- record with ACKs both ways); other protocols when packets went both ways. A refused (RST) or
-- unanswered connection is an attempt.
--
-- Parameters: {addresses:Array(IPv6)} the listed addresses. Columns: internal, external,
-- internal_initiated, connections, established, bytes_out (internal → external), bytes_in,
-- packets_out, packets_in, service_ports (the responder's ports), protocols, new_flows, new_bytes,
-- new_packets (this window), first_seen, last_seen, rate (sampling), exporters.
SELECT
    internal,
    external,
    internal_initiated,
    count() AS connections,
    countIf(c_established) AS established,
    sum(c_out_bytes) AS bytes_out,
    sum(c_in_bytes) AS bytes_in,
    sum(c_out_packets) AS packets_out,
    sum(c_in_packets) AS packets_in,
    arraySort(groupUniqArray(10)(if(internal_initiated, external_port, internal_port))) AS service_ports,
    arraySort(groupUniqArray(4)(proto)) AS protocols,
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
        *,
        multiIf(
            proto = 6 AND int_records > 0 AND bitAnd(int_flags, 0x12) = 0x02
                AND NOT (ext_records > 0 AND bitAnd(ext_flags, 0x12) = 0x02), 1,
            proto = 6 AND ext_records > 0 AND bitAnd(ext_flags, 0x12) = 0x02
                AND NOT (int_records > 0 AND bitAnd(int_flags, 0x12) = 0x02), 0,
            int_biflow != ext_biflow, int_biflow,
            external_port < 1024 AND internal_port >= 1024, 1,
            internal_port < 1024 AND external_port >= 1024, 0,
            int_records > 0 AND ext_records > 0 AND int_start != ext_start, int_start < ext_start,
            int_records = 0 OR ext_records = 0, int_records > 0,
            external_port <= internal_port) AS internal_initiated,
        if(internal_initiated, int_flags, ext_flags) AS init_flags,
        if(internal_initiated, ext_flags, int_flags) AS resp_flags,
        if(proto = 6,
           (bitAnd(resp_flags, 0x12) = 0x12 AND bitAnd(init_flags, 0x10) != 0)
           OR ((int_biflow OR ext_biflow) AND c_in_packets > 0 AND c_out_packets > 0 AND bitAnd(init_flags, 0x10) != 0)
           OR (bitAnd(init_flags, 0x12) = 0x10 AND bitAnd(resp_flags, 0x12) = 0x10),
           c_in_packets > 0 AND c_out_packets > 0) AS c_established
    FROM
    (
        SELECT
            internal, external, proto, internal_port, external_port,
            sum(if(side = 0, bytes, reverse_bytes)) AS c_out_bytes,
            sum(if(side = 0, reverse_bytes, bytes)) AS c_in_bytes,
            sum(if(side = 0, packets, reverse_packets)) AS c_out_packets,
            sum(if(side = 0, reverse_packets, packets)) AS c_in_packets,
            groupBitOrIf(tcp_flags, side = 0) AS int_flags,
            groupBitOrIf(tcp_flags, side = 1) AS ext_flags,
            countIf(side = 0) AS int_records,
            countIf(side = 1) AS ext_records,
            countIf(side = 0 AND reverse_packets > 0) > 0 AS int_biflow,
            countIf(side = 1 AND reverse_packets > 0) > 0 AS ext_biflow,
            minIf(flow_start, side = 0) AS int_start,
            minIf(flow_start, side = 1) AS ext_start,
            countIf(in_window = 1) AS c_new_flows,
            sumIf(bytes + reverse_bytes, in_window = 1) AS c_new_bytes,
            sumIf(packets + reverse_packets, in_window = 1) AS c_new_packets,
            min(flow_start) AS c_first,
            max(flow_end) AS c_last,
            max(sampling_rate) AS c_rate,
            groupUniqArray(4)(exporter_address) AS c_exporters
        FROM
        (
            SELECT src_addr AS internal, dst_addr AS external, src_port AS internal_port,
                   dst_port AS external_port, 0 AS side, proto, bytes, packets, reverse_bytes,
                   reverse_packets, tcp_flags, in_window, flow_start, flow_end, sampling_rate,
                   exporter_address
            FROM {{flows}}
            WHERE dst_addr IN {addresses:Array(IPv6)} AND src_internal = 1
            UNION ALL
            SELECT dst_addr AS internal, src_addr AS external, dst_port AS internal_port,
                   src_port AS external_port, 1 AS side, proto, bytes, packets, reverse_bytes,
                   reverse_packets, tcp_flags, in_window, flow_start, flow_end, sampling_rate,
                   exporter_address
            FROM {{flows}}
            WHERE src_addr IN {addresses:Array(IPv6)} AND dst_internal = 1
        )
        GROUP BY internal, external, proto, internal_port, external_port
    )
)
GROUP BY internal, external, internal_initiated
HAVING new_flows > 0
ORDER BY bytes_out + bytes_in DESC
LIMIT 5000
