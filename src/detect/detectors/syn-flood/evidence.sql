-- SYN flood, step 2: the SYN records toward each host found by query.sql that overlap its
-- over-threshold span: who sent them, to which ports, and how many sources sent a single packet (the
-- tell of spoofed sources: a real client retransmits an unanswered SYN, a spoofing flooder picks a new
-- random address for every packet).
--
-- Parameters: {victims:Array(IPv6)} with {span_from:Array(Int64)}, {span_to:Array(Int64)} (epoch ms).
--
-- Columns: victim, first_seen/last_seen (epoch ms, within the span), syn_packets, sources,
-- single_packet_sources (a source whose SYN records in the span carried one packet, before sampling),
-- internal_source_share, top_sources [(addr, packets)], top_ports [(port, packets)], ports (distinct),
-- new_flows/new_bytes/new_packets (this window's new SYN records), exporters.
WITH
spanned AS
(
    SELECT dst_addr AS victim, src_addr AS peer, dst_port AS port, src_internal AS peer_internal,
           packets AS p, bytes AS b, sampling_rate AS rate, in_window AS w, exporter_address,
           least(toUnixTimestamp64Milli(flow_start), toUnixTimestamp64Milli(flow_end)) AS s,
           toUnixTimestamp64Milli(flow_end) AS e,
           {span_from:Array(Int64)}[indexOf({victims:Array(IPv6)}, dst_addr)] AS span_lo,
           {span_to:Array(Int64)}[indexOf({victims:Array(IPv6)}, dst_addr)] AS span_hi
    FROM {{flows}}
    WHERE proto = 6 AND bitAnd(tcp_flags, 0x12) = 0x02 AND has({victims:Array(IPv6)}, dst_addr)
      AND e >= span_lo AND s < span_hi
),
sources AS
(
    SELECT victim,
           count() AS source_count,
           countIf(raw_packets <= 1) AS single_sources,
           sumIf(source_packets, source_internal = 1) / greatest(sum(source_packets), 1) AS internal_share,
           arraySlice(arrayReverseSort(x -> x.2, groupArray((toString(peer), source_packets))), 1, 20) AS top
    FROM
    (
        SELECT victim, peer, any(peer_internal) AS source_internal, sum(p) AS source_packets,
               sum(p / greatest(rate, 1)) AS raw_packets
        FROM spanned
        GROUP BY victim, peer
    )
    GROUP BY victim
),
ports AS
(
    SELECT victim, count() AS port_count,
           arraySlice(arrayReverseSort(x -> x.2, groupArray((port, port_packets))), 1, 10) AS top
    FROM
    (
        SELECT victim, port, sum(p) AS port_packets
        FROM spanned
        GROUP BY victim, port
    )
    GROUP BY victim
),
totals AS
(
    SELECT victim,
           greatest(any(span_lo), min(s)) AS first_ms,
           least(any(span_hi), max(e)) AS last_ms,
           sum(p) AS syn_p,
           countIf(w = 1) AS new_f,
           sumIf(b, w = 1) AS new_b,
           sumIf(p, w = 1) AS new_p,
           groupUniqArray(8)(exporter_address) AS exporter_list
    FROM spanned
    GROUP BY victim
)
SELECT
    totals.victim AS victim,
    totals.first_ms AS first_seen,
    totals.last_ms AS last_seen,
    totals.syn_p AS syn_packets,
    sources.source_count AS sources,
    sources.single_sources AS single_packet_sources,
    sources.internal_share AS internal_source_share,
    sources.top AS top_sources,
    ports.top AS top_ports,
    ports.port_count AS ports,
    totals.new_f AS new_flows,
    totals.new_b AS new_bytes,
    totals.new_p AS new_packets,
    totals.exporter_list AS exporters
FROM totals
INNER JOIN sources ON sources.victim = totals.victim
INNER JOIN ports ON ports.victim = totals.victim
LIMIT 200
