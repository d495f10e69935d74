-- UDP reflection/amplification, victim side: a host receiving large UDP responses from the source
-- ports of amplifiable services (CISA alert TA14-017A: DNS, NTP, SSDP, SNMP, CLDAP, memcached,
-- chargen, QOTD, portmap, WS-Discovery, NetBIOS...) from many reflectors it never asked.
--
-- Each UDP record touching an amplification port is seen as a response (from the service port toward
-- the host) or a request (from the host to the service port), from uniflow records and from biflow
-- reverse counters alike, and summed per (host, reflector, port) over the whole context: active-timeout
-- splits add up. A reflector is unsolicited when the host sent it no request on that port in the
-- context, and did not send a multicast or broadcast query on that port either (an SSDP M-SEARCH or
-- a NetBIOS broadcast is answered by every device, each unicast). The host must also receive far more
-- than it asks for on these ports overall (response/request bytes ≥ {min_ratio}): that keeps a
-- resolver whose requests a sampling exporter happened to miss from looking attacked.
--
-- Reported when the unsolicited responses come from enough reflectors ({min_reflectors}, divided by
-- the sampling rate down to {min_reflectors_sampled}: a sampled exporter sees fewer of them), number
-- at least {min_packets} packets (already scaled by sampling) averaging at least
-- {min_bytes_per_packet} bytes, and include this window's new flows.
--
-- Parameters: {ports:Array(UInt16)}, {min_reflectors:Float64}, {min_reflectors_sampled:Float64},
-- {min_packets:Float64}, {min_bytes_per_packet:Float64}, {min_ratio:Float64}.
-- Columns: victim, victim_internal, sampling, thr_reflectors, reflectors, solicited_reflectors,
-- unsolicited_packets, unsolicited_bytes, bytes_per_packet, response_bytes, request_bytes,
-- port_bytes [(port, bytes)], port_reflectors [(port, reflectors)], top_reflectors [(addr, bytes)],
-- first_seen/last_seen (epoch ms, unsolicited responses), new_flows/new_bytes/new_packets (this
-- window's unsolicited responses), exporters.
WITH
-- Hosts receiving at least {min_packets} packets from amplification ports at all: the only ones worth
-- pairing up (a cheap pass that keeps the per-pair work small).
candidates AS
(
    SELECT side.1 AS victim
    FROM
    (
        SELECT arrayJoin(arrayFilter(x -> x.3, [
                   (dst_addr, packets, has({ports:Array(UInt16)}, src_port)),
                   (src_addr, reverse_packets, has({ports:Array(UInt16)}, dst_port) AND reverse_packets > 0)
               ])) AS side
        FROM {{flows}}
        WHERE proto = 17 AND (has({ports:Array(UInt16)}, src_port) OR has({ports:Array(UInt16)}, dst_port))
    )
    GROUP BY victim
    HAVING sum(side.2) >= {min_packets:Float64}
),
pairs AS
(
    SELECT side.1 AS victim, side.2 AS reflector, side.3 AS port,
           sum(side.4) AS resp_p, sum(side.5) AS resp_b, sum(side.6) AS req_p, sum(side.7) AS req_b,
           countIf(in_window = 1 AND side.4 > 0) AS new_f,
           sumIf(side.5, in_window = 1) AS new_b,
           sumIf(side.4, in_window = 1) AS new_p,
           minIf(s, side.4 > 0) AS first_ms,
           maxIf(e, side.4 > 0) AS last_ms,
           max(sampling_rate) AS rate,
           any(side.8) AS v_internal,
           groupUniqArrayIf(4)(exporter_address, side.4 > 0) AS pair_exporters
    FROM
    (
        SELECT in_window, sampling_rate, exporter_address,
               least(toUnixTimestamp64Milli(flow_start), toUnixTimestamp64Milli(flow_end)) AS s,
               toUnixTimestamp64Milli(flow_end) AS e,
               -- (host, reflector, port, responses to the host: packets, bytes, requests from the
               --  host: packets, bytes, host internal, applies)
               arrayJoin(arrayFilter(x -> x.9, [
                   (dst_addr, src_addr, src_port, packets, bytes, reverse_packets, reverse_bytes, dst_internal,
                    has({ports:Array(UInt16)}, src_port)),
                   (src_addr, dst_addr, dst_port, reverse_packets, reverse_bytes, packets, bytes, src_internal,
                    has({ports:Array(UInt16)}, dst_port))
               ])) AS side
        FROM {{flows}}
        WHERE proto = 17 AND (has({ports:Array(UInt16)}, src_port) OR has({ports:Array(UInt16)}, dst_port))
          AND (dst_addr IN candidates OR src_addr IN candidates)
    )
    WHERE side.1 IN candidates
    GROUP BY victim, reflector, port
),
grouped AS
(
    SELECT *,
           -- Multicast (IPv4 224/4, IPv6 ff00::/8), limited and directed (a.b.c.255) broadcast.
           (reflector BETWEEN toIPv6('::ffff:224.0.0.0') AND toIPv6('::ffff:255.255.255.255')
               OR reflector >= toIPv6('ff00::')
               OR (startsWith(IPv6NumToString(reflector), '::ffff:') AND endsWith(IPv6NumToString(reflector), '.255')))
               AS group_address
    FROM pairs
),
flagged AS
(
    SELECT *,
           resp_p > 0 AND req_p = 0 AND NOT group_address AND NOT port_queried_by_group AS unsolicited
    FROM
    (
        SELECT *, max(group_address AND req_p > 0) OVER (PARTITION BY victim, port) AS port_queried_by_group
        FROM grouped
    )
)
SELECT
    victim,
    any(v_internal) AS victim_internal,
    max(rate) AS sampling,
    greatest(least({min_reflectors_sampled:Float64}, {min_reflectors:Float64}),
             {min_reflectors:Float64} / greatest(sampling, 1)) AS thr_reflectors,
    uniqExactIf(reflector, unsolicited) AS reflectors,
    uniqExactIf(reflector, resp_p > 0 AND NOT unsolicited AND NOT group_address) AS solicited_reflectors,
    sumIf(resp_p, unsolicited) AS unsolicited_packets,
    sumIf(resp_b, unsolicited) AS unsolicited_bytes,
    unsolicited_bytes / greatest(unsolicited_packets, 1) AS bytes_per_packet,
    sumIf(resp_b, NOT group_address) AS response_bytes,
    sum(req_b) AS request_bytes,
    sumMapIf([port], [toUInt64(resp_b)], unsolicited) AS port_map,
    sumMapIf([port], [toUInt64(1)], unsolicited) AS port_reflector_map,
    arraySlice(arrayReverseSort(x -> x.2, groupArrayIf(100000)((toString(reflector), resp_b), unsolicited)), 1, 20)
        AS top_reflectors,
    minIf(first_ms, unsolicited) AS first_seen,
    maxIf(last_ms, unsolicited) AS last_seen,
    sumIf(new_f, unsolicited) AS new_flows,
    sumIf(new_b, unsolicited) AS new_bytes,
    sumIf(new_p, unsolicited) AS new_packets,
    arrayDistinct(flatten(groupArrayIf(8)(pair_exporters, unsolicited))) AS exporters
FROM flagged
GROUP BY victim
HAVING new_packets > 0
   AND reflectors >= thr_reflectors
   AND unsolicited_packets >= {min_packets:Float64}
   AND bytes_per_packet >= {min_bytes_per_packet:Float64}
   AND response_bytes >= {min_ratio:Float64} * request_bytes
ORDER BY unsolicited_bytes DESC
LIMIT 200
