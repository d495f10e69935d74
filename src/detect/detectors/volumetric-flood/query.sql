-- Volumetric flood, step 1: the hosts that receive traffic far above what a host normally receives,
-- in packets, bits or new flows per second (FastNetMon's per-host thresholds: threshold_pps,
-- threshold_mbps, threshold_flows). evidence.sql then describes the hosts found here.
--
-- Rates come from short buckets of traffic time ({bucket_ms}). A flow record says how many packets
-- and bytes it carried between its first and last packet, not when: each record is pro-rated over the
-- buckets its span overlaps (its packets spread evenly over its duration), so that one long record is
-- not counted as a burst in the bucket where it started or ended. A record with no duration falls in
-- its own bucket. Flows per second count 5-tuples whose first record starts in the bucket: the later
-- records of an active-timeout split are the same flow, and a 5-tuple whose first record in the
-- context began before it started earlier (or continues a record exported before the context).
--
-- Two-way conversations do not count: traffic from a peer on a 5-tuple to which the host answers
-- with at least one packet per {answer_ratio} received (and, for TCP, with ACK set in both
-- directions: the handshake completed) is a download, a backup, a video stream or a flash crowd
-- being served, not a flood. SYN-ACKs to a SYN flood and RSTs to an ACK flood do not make a
-- conversation (the flooder never acknowledges), and ICMP never does (echo replies answer a ping
-- flood; exporters key ICMP flows by type, without ports). Both directions are read from uniflow
-- records and from biflow reverse counters: every record is seen from the side of each host it
-- touches (what the host received, what it sent).
--
-- The window's flows and the lookback before them are evaluated together (records exported late by
-- an active timeout still fill the buckets they cover); a host is reported when a bucket over a
-- threshold holds packets of this window's new flows.
--
-- Parameters: {bucket_ms:UInt32}; {min_pps:Float64}, {min_bps:Float64}, {min_fps:Float64} default
-- thresholds; {min_fps_sampled:Float64} the floor of the flows threshold once divided by the sampling
-- rate (packets and bytes are already scaled, but a sampled exporter sees fewer flows; the floor never
-- exceeds the unsampled threshold); per-host overrides {override_lo:Array(IPv6)},
-- {override_hi:Array(IPv6)} (CIDR bounds) with {override_pps:Array(Float64)},
-- {override_bps:Array(Float64)}, {override_fps:Array(Float64)} (the first matching range wins);
-- {prefilter_packets:Float64}, {prefilter_bytes:Float64}: the least a host must receive over the
-- whole context to be looked at (the lowest threshold over one bucket); {prefilter_fps:Float64} the
-- lowest flows threshold (default or override) before sampling, which the prefilter scales by the
-- host's highest sampling rate down to the floor;
-- {answer_ratio:Float64}; {span_cap_ms:Int64} how far back from its end a record is spread.
--
-- Columns: victim, victim_internal, rate (sampling), thr_pps/thr_bps/thr_fps (in force for this
-- host), peak_pps, peak_bps, peak_fps, hot_buckets, span_from/span_to (epoch ms: the first and the
-- end of the last over-threshold bucket).
WITH
candidates AS
(
    SELECT side.1 AS victim
    FROM
    (
        SELECT arrayJoin([(dst_addr, packets, bytes), (src_addr, reverse_packets, reverse_bytes)]) AS side,
               sampling_rate
        FROM {{flows}}
    )
    WHERE side.2 > 0
    GROUP BY victim
    HAVING sum(side.2) >= {prefilter_packets:Float64}
        OR sum(side.3) >= {prefilter_bytes:Float64}
        -- A host's flows threshold depends on its exporters' sampling rate (the floor applies only
        -- once divided by it): a host seen unsampled must bring the full threshold's records into the
        -- context, or a busy network makes every host a candidate.
        OR count() >= {bucket_ms:UInt32} / 1000 * greatest(least({min_fps_sampled:Float64}, {prefilter_fps:Float64}),
                                                           {prefilter_fps:Float64} / greatest(max(sampling_rate), 1))
),
tuples AS
(
    SELECT side.1 AS victim, side.2 AS peer, side.3 AS vport, side.4 AS pport, proto,
           sum(side.5) AS tuple_in,
           sum(side.8) AS tuple_out,
           groupBitOr(side.7) AS f_in,
           groupBitOr(side.9) AS f_out,
           proto NOT IN (1, 58) AND tuple_out > 0 AND tuple_out * {answer_ratio:Float64} >= tuple_in
               AND (proto != 6 OR (bitAnd(f_in, 0x10) != 0 AND bitAnd(f_out, 0x10) != 0)) AS answered,
           minIf(least(s, e), side.5 > 0) AS tuple_first,
           groupArrayIf(1000)((least(s, e), e, side.5, side.6, in_window), side.5 > 0) AS recs,
           max(sampling_rate) AS tuple_rate,
           any(side.10) AS v_internal
    FROM
    (
        SELECT proto, in_window, sampling_rate,
               toUnixTimestamp64Milli(flow_start) AS s, toUnixTimestamp64Milli(flow_end) AS e,
               -- (host, peer, host port, peer port, received packets, received bytes, received flags,
               --  sent packets, sent flags, host internal); biflow flags are the record's.
               arrayJoin([
                   (dst_addr, src_addr, dst_port, src_port, packets, bytes, tcp_flags,
                    reverse_packets, if(reverse_packets > 0, tcp_flags, 0), dst_internal),
                   (src_addr, dst_addr, src_port, dst_port, reverse_packets, reverse_bytes,
                    if(reverse_packets > 0, tcp_flags, 0), packets, tcp_flags, src_internal)
               ]) AS side
        FROM {{flows}}
        WHERE dst_addr IN candidates OR src_addr IN candidates
    )
    WHERE side.1 IN candidates
    GROUP BY victim, peer, vport, pport, proto
    HAVING tuple_in > 0 AND NOT answered
),
buckets AS
(
    SELECT victim, bucket,
           sum(p * share) AS bucket_packets,
           sum(b * share) AS bucket_bytes,
           sum(p * share * w) AS bucket_new_packets,
           -- A 5-tuple whose first record here began before the context is a flow that started
           -- earlier (or the continuation of one cut by an active timeout), not a new one.
           countIf(first_rec AND s >= {context_from:Int64} AND bucket = intDiv(s, {bucket_ms:UInt32})) AS bucket_new_tuples,
           max(tuple_rate) AS rate,
           any(v_internal) AS victim_internal
    FROM
    (
        SELECT victim, tuple_rate, v_internal,
               r.1 AS s, r.2 AS e, r.3 AS p, r.4 AS b, r.5 AS w, r.1 = tuple_first AS first_rec,
               arrayJoin(range(intDiv(greatest(s, e - {span_cap_ms:Int64}), {bucket_ms:UInt32}),
                               intDiv(e, {bucket_ms:UInt32}) + 1)) AS bucket,
               if(e > s,
                  greatest(0, least(e, (bucket + 1) * {bucket_ms:UInt32}) - greatest(s, bucket * {bucket_ms:UInt32})) / (e - s),
                  1.0) AS share
        FROM tuples
        ARRAY JOIN recs AS r
    )
    GROUP BY victim, bucket
),
rated AS
(
    SELECT victim, bucket, rate, victim_internal, bucket_new_packets,
           bucket_packets / ({bucket_ms:UInt32} / 1000) AS pps,
           bucket_bytes * 8 / ({bucket_ms:UInt32} / 1000) AS bps,
           bucket_new_tuples / ({bucket_ms:UInt32} / 1000) AS fps,
           arrayFirstIndex((lo, hi) -> victim >= lo AND victim <= hi, {override_lo:Array(IPv6)}, {override_hi:Array(IPv6)}) AS o,
           if(o > 0, {override_pps:Array(Float64)}[o], {min_pps:Float64}) AS t_pps,
           if(o > 0, {override_bps:Array(Float64)}[o], {min_bps:Float64}) AS t_bps,
           if(o > 0, {override_fps:Array(Float64)}[o], {min_fps:Float64}) AS base_fps
    FROM buckets
)
SELECT
    victim,
    any(victim_internal) AS victim_internal,
    max(rate) AS sampling,
    any(t_pps) AS thr_pps,
    any(t_bps) AS thr_bps,
    greatest(least({min_fps_sampled:Float64}, any(base_fps)), any(base_fps) / greatest(sampling, 1)) AS thr_fps,
    max(pps) AS peak_pps,
    max(bps) AS peak_bps,
    max(fps) AS peak_fps,
    count() AS hot_buckets,
    min(bucket) * {bucket_ms:UInt32} AS span_from,
    (max(bucket) + 1) * {bucket_ms:UInt32} AS span_to,
    sum(bucket_new_packets) AS hot_new_packets
FROM rated
-- The flows threshold needs the host's sampling rate, known per bucket here; each bucket is judged
-- with the highest rate its records carry, the host's rate in the outer query.
WHERE pps >= t_pps
   OR bps >= t_bps
   OR fps >= greatest(least({min_fps_sampled:Float64}, base_fps), base_fps / greatest(rate, 1))
GROUP BY victim
HAVING hot_new_packets > 0
ORDER BY greatest(peak_pps / thr_pps, peak_bps / thr_bps, peak_fps / thr_fps) DESC
LIMIT 200
