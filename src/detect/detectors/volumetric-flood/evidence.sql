-- Volumetric flood, step 2: what the flood toward each host found by query.sql consisted of, from
-- the records toward the host that overlap its over-threshold span. The same one-way rule as step 1:
-- 5-tuples the host answers (two-way conversations) are left out of the flood and only counted as
-- conversation_packets.
--
-- Parameters: {victims:Array(IPv6)} with {span_from:Array(Int64)}, {span_to:Array(Int64)} (epoch ms,
-- one span per host); {answer_ratio:Float64}.
--
-- Columns: victim, first_seen/last_seen (epoch ms: the flood's records, within the span), sources,
-- top_sources [(addr, packets, bytes)], internal_source_share, protocols [(proto, packets)],
-- top_ports, flood_packets/flood_bytes (records overlapping the span), conversation_packets,
-- new_flows/new_bytes/new_packets (this window's new records of the flood), exporters.
WITH
spanned AS
(
    SELECT victim, peer, vport, proto, answered, p_internal, tuple_exporters,
           r.1 AS s, r.2 AS e, r.3 AS p, r.4 AS b, r.5 AS w,
           {span_from:Array(Int64)}[indexOf({victims:Array(IPv6)}, victim)] AS span_lo,
           {span_to:Array(Int64)}[indexOf({victims:Array(IPv6)}, victim)] AS span_hi
    FROM
    (
        SELECT side.1 AS victim, side.2 AS peer, side.3 AS vport, side.4 AS pport, proto,
               sum(side.5) AS tuple_in,
               sum(side.8) AS tuple_out,
               groupBitOr(side.7) AS f_in,
               groupBitOr(side.9) AS f_out,
               proto NOT IN (1, 58) AND tuple_out > 0 AND tuple_out * {answer_ratio:Float64} >= tuple_in
                   AND (proto != 6 OR (bitAnd(f_in, 0x10) != 0 AND bitAnd(f_out, 0x10) != 0)) AS answered,
               groupArrayIf(1000)((least(s, e), e, side.5, side.6, in_window), side.5 > 0) AS recs,
               any(side.10) AS p_internal,
               groupUniqArrayIf(4)(exporter_address, side.5 > 0) AS tuple_exporters
        FROM
        (
            SELECT proto, in_window, exporter_address,
                   toUnixTimestamp64Milli(flow_start) AS s, toUnixTimestamp64Milli(flow_end) AS e,
                   -- (host, peer, host port, peer port, received packets, received bytes, received
                   --  flags, sent packets, sent flags, peer internal)
                   arrayJoin([
                       (dst_addr, src_addr, dst_port, src_port, packets, bytes, tcp_flags,
                        reverse_packets, if(reverse_packets > 0, tcp_flags, 0), src_internal),
                       (src_addr, dst_addr, src_port, dst_port, reverse_packets, reverse_bytes,
                        if(reverse_packets > 0, tcp_flags, 0), packets, tcp_flags, dst_internal)
                   ]) AS side
            FROM {{flows}}
            WHERE has({victims:Array(IPv6)}, dst_addr) OR has({victims:Array(IPv6)}, src_addr)
        )
        WHERE has({victims:Array(IPv6)}, side.1)
        GROUP BY victim, peer, vport, pport, proto
        HAVING tuple_in > 0
    )
    ARRAY JOIN recs AS r
    WHERE r.2 >= span_lo AND r.1 < span_hi
),
peers AS
(
    SELECT victim,
           count() AS sources,
           arraySlice(arrayReverseSort(x -> x.2, groupArray((peer, peer_packets, peer_bytes))), 1, 20) AS top,
           sumIf(peer_packets, peer_internal = 1) / greatest(sum(peer_packets), 1) AS internal_share
    FROM
    (
        SELECT victim, peer, any(p_internal) AS peer_internal, sum(p) AS peer_packets, sum(b) AS peer_bytes
        FROM spanned
        WHERE NOT answered
        GROUP BY victim, peer
    )
    GROUP BY victim
),
flood AS
(
    SELECT victim,
           greatest(any(span_lo), minIf(s, NOT answered)) AS first_ms,
           least(any(span_hi), maxIf(e, NOT answered)) AS last_ms,
           sumIf(p, NOT answered) AS flood_p,
           sumIf(b, NOT answered) AS flood_b,
           sumIf(p, answered) AS conversation_p,
           sumMapIf([toUInt16(proto)], [toFloat64(p)], NOT answered) AS proto_map,
           topKWeightedIf(10)(vport, toUInt64(p), NOT answered) AS ports,
           countIf(w = 1 AND NOT answered) AS new_f,
           sumIf(b, w = 1 AND NOT answered) AS new_b,
           sumIf(p, w = 1 AND NOT answered) AS new_p,
           arrayDistinct(flatten(groupArrayIf(8)(tuple_exporters, NOT answered))) AS exporter_list
    FROM spanned
    GROUP BY victim
)
SELECT
    flood.victim AS victim,
    flood.first_ms AS first_seen,
    flood.last_ms AS last_seen,
    peers.sources AS sources,
    arrayMap(x -> (toString(x.1), x.2, x.3), peers.top) AS top_sources,
    peers.internal_share AS internal_source_share,
    arrayZip(flood.proto_map.1, flood.proto_map.2) AS protocols,
    flood.ports AS top_ports,
    flood.flood_p AS flood_packets,
    flood.flood_b AS flood_bytes,
    flood.conversation_p AS conversation_packets,
    flood.new_f AS new_flows,
    flood.new_b AS new_bytes,
    flood.new_p AS new_packets,
    flood.exporter_list AS exporters
FROM flood
INNER JOIN peers ON peers.victim = flood.victim
LIMIT 200
