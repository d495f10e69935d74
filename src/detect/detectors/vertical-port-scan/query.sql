-- Vertical port scan: one source probing many TCP ports of one destination.
--
-- A probe is a TCP flow with SYN and no ACK in its own direction (SYN only, or SYN then RST: a
-- half-open scan), which is what a scanner's side of a refused, unanswered or half-open connection
-- looks like in both uniflow and biflow exports. An answer is the destination's SYN-ACK back to the
-- source: the port was open. Each pair is evaluated over the whole context (lookback), and reported
-- only when some of its probes are new in this window.
--
-- Parameters: {min_ports:UInt32} distinct probed ports; {min_ports_sampled:UInt32} the floor when the
-- exporter samples (ports seen shrink with the rate: the threshold is divided by it, down to this).
-- Columns: src, dst, ports, sample_ports, open_ports, probes (context), new_flows/new_bytes/new_packets
-- (this window), first_seen, last_seen, rate (sampling), exporters.
SELECT
    src,
    dst,
    uniqExactIf(port, probe = 1) AS ports,
    arraySort(groupUniqArrayIf(50)(port, probe = 1)) AS sample_ports,
    arraySort(groupUniqArrayIf(50)(port, probe = 0)) AS open_ports,
    countIf(probe = 1) AS probes,
    countIf(probe = 1 AND in_window = 1) AS new_flows,
    sumIf(bytes, probe = 1 AND in_window = 1) AS new_bytes,
    sumIf(packets, probe = 1 AND in_window = 1) AS new_packets,
    minIf(flow_start, probe = 1) AS first_seen,
    maxIf(flow_end, probe = 1) AS last_seen,
    maxIf(sampling_rate, probe = 1) AS rate,
    any(src_internal) AS src_is_internal,
    groupUniqArrayIf(4)(exporter_address, probe = 1) AS exporters
FROM
(
    SELECT src_addr AS src, dst_addr AS dst, dst_port AS port, 1 AS probe, in_window, bytes, packets,
           flow_start, flow_end, sampling_rate, src_internal, exporter_address
    FROM {{flows}}
    WHERE proto = 6 AND bitAnd(tcp_flags, 0x12) = 0x02
    UNION ALL
    SELECT dst_addr AS src, src_addr AS dst, src_port AS port, 0 AS probe, in_window, bytes, packets,
           flow_start, flow_end, sampling_rate, dst_internal AS src_internal, exporter_address
    FROM {{flows}}
    WHERE proto = 6 AND bitAnd(tcp_flags, 0x12) = 0x12
)
GROUP BY src, dst
HAVING new_flows > 0
   AND ports >= greatest({min_ports_sampled:UInt32}, toUInt32(ceil({min_ports:UInt32} / greatest(rate, 1))))
ORDER BY ports DESC
LIMIT 1000
