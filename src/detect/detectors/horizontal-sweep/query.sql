-- Horizontal sweep: one source probing one port (or a few) on many destinations, or pinging many
-- destinations (ICMP/ICMPv6 echo).
--
-- A TCP probe is a flow with SYN and no ACK in the source's own direction: a refused, unanswered or
-- half-open attempt (Zeek's scan.zeek counts only such failed attempts). Completed connections
-- (monitoring, clients of a cluster) are never probes. An ICMP probe is an echo request (type 8, or
-- 128 for ICMPv6); echo has no handshake, so every request counts, answered or not. Answers are
-- collected for the evidence only: the destination's SYN-ACK back to the source on that port (open),
-- or its echo reply (alive). Backscatter (SYN-ACKs, RSTs, unreachables) and servers answering many
-- clients (DNS, NTP) send no SYN without ACK and no echo request, so they are never probes.
--
-- Per (source, protocol, port) the distinct destinations over the whole context are compared with the
-- threshold (Zeek: 25 hosts on one port in 5 minutes); the ports that cross it are then folded into
-- one row per (source, protocol), reported only when some of their probes are new in this window.
-- ICMP sources that ping each destination more than {max_echo_per_host} times on average within the
-- context are monitoring (a poller repeats its hosts every cycle; a sweep touches each once, plus
-- retries) and are left out.
--
-- Parameters: {min_hosts:UInt32} destinations per port for an external source, {min_hosts_internal:UInt32}
-- for an internal one, {min_hosts_sampled:UInt32} the floor once a threshold is divided by the
-- sampling rate (distinct hosts seen shrink with the rate), {max_echo_per_host:Float64}.
-- Columns: src, kind ('tcp' | 'icmp'), src_is_internal, ports (number swept), port_stats (up to 20
-- [port, hosts, answered] tuples, most hosts first), max_hosts, hosts_sample (destinations of the
-- widest port, up to 50), answered_sample (of those that answered, up to 20), probes (context),
-- new_flows/new_bytes/new_packets (this window), first_seen, last_seen, rate, threshold, exporters.
WITH
candidates AS
(
    -- Sources with enough probed destinations on some port to matter, even at the sampled floor:
    -- answers are only collected for them.
    SELECT src_addr
    FROM {{flows}}
    WHERE (proto = 6 AND bitAnd(tcp_flags, 0x12) = 0x02)
       OR (proto = 1 AND icmp_type = 8)
       OR (proto = 58 AND icmp_type = 128)
    GROUP BY src_addr, proto, dst_port
    HAVING uniq(dst_addr) >= {min_hosts_sampled:UInt32}
),
per_port AS
(
    SELECT
        src,
        kind,
        port,
        uniqExactIf(dst, probe = 1) AS hosts,
        uniqExactIf(dst, probe = 0) AS answered,
        groupUniqArrayIf(50)(dst, probe = 1) AS sample,
        groupUniqArrayIf(20)(dst, probe = 0) AS answered_dsts,
        countIf(probe = 1) AS probe_flows,
        sumIf(packets, probe = 1) AS probe_packets,
        countIf(probe = 1 AND in_window = 1) AS port_new_flows,
        sumIf(bytes, probe = 1 AND in_window = 1) AS port_new_bytes,
        sumIf(packets, probe = 1 AND in_window = 1) AS port_new_packets,
        minIf(flow_start, probe = 1) AS port_first,
        maxIf(flow_end, probe = 1) AS port_last,
        maxIf(sampling_rate, probe = 1) AS port_rate,
        maxIf(src_internal, probe = 1) AS src_int,
        groupUniqArrayIf(4)(exporter_address, probe = 1) AS port_exporters,
        greatest({min_hosts_sampled:UInt32},
                 toUInt32(ceil(if(src_int = 1, {min_hosts_internal:UInt32}, {min_hosts:UInt32})
                               / greatest(port_rate, 1)))) AS port_threshold
    FROM
    (
        SELECT src_addr AS src, dst_addr AS dst, 'tcp' AS kind, dst_port AS port, 1 AS probe, in_window,
               bytes, packets, flow_start, flow_end, sampling_rate, src_internal, exporter_address
        FROM {{flows}}
        WHERE proto = 6 AND bitAnd(tcp_flags, 0x12) = 0x02
        UNION ALL
        SELECT src_addr, dst_addr, 'icmp', 0, 1, in_window,
               bytes, packets, flow_start, flow_end, sampling_rate, src_internal, exporter_address
        FROM {{flows}}
        WHERE (proto = 1 AND icmp_type = 8) OR (proto = 58 AND icmp_type = 128)
        UNION ALL
        SELECT dst_addr, src_addr, 'tcp', src_port, 0, in_window,
               bytes, packets, flow_start, flow_end, sampling_rate, dst_internal, exporter_address
        FROM {{flows}}
        WHERE proto = 6 AND bitAnd(tcp_flags, 0x12) = 0x12 AND dst_addr IN candidates
        UNION ALL
        SELECT dst_addr, src_addr, 'icmp', 0, 0, in_window,
               bytes, packets, flow_start, flow_end, sampling_rate, dst_internal, exporter_address
        FROM {{flows}}
        WHERE ((proto = 1 AND icmp_type = 0) OR (proto = 58 AND icmp_type = 129)) AND dst_addr IN candidates
    )
    GROUP BY src, kind, port
    HAVING probe_flows > 0
       AND hosts >= port_threshold
       -- Sampled exports see each swept host about once, at `rate` packets: allow for that.
       AND (kind = 'tcp' OR probe_packets <= hosts * greatest({max_echo_per_host:Float64}, toFloat64(2 * port_rate)))
)
SELECT
    src,
    kind,
    max(src_int) AS src_is_internal,
    count() AS ports,
    arraySlice(arrayReverseSort(x -> x.2, groupArray((port, hosts, answered))), 1, 20) AS port_stats,
    max(hosts) AS max_hosts,
    argMax(sample, hosts) AS hosts_sample,
    argMax(answered_dsts, hosts) AS answered_sample,
    sum(probe_flows) AS probes,
    sum(port_new_flows) AS new_flows,
    sum(port_new_bytes) AS new_bytes,
    sum(port_new_packets) AS new_packets,
    min(port_first) AS first_seen,
    max(port_last) AS last_seen,
    max(port_rate) AS rate,
    min(port_threshold) AS threshold,
    arrayDistinct(flatten(groupArray(port_exporters))) AS exporters
FROM per_port
GROUP BY src, kind
HAVING new_flows > 0
ORDER BY max_hosts DESC
LIMIT 1000
