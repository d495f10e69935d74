-- SYN flood, step 1: the hosts receiving TCP SYNs at a high rate, where SYNs are most of the TCP
-- packets they receive, from many sources. evidence.sql then describes the hosts found here.
--
-- A SYN packet is one of a TCP record with SYN and without ACK (tcp_flags is the OR over the record:
-- a client's record of a completed connection carries ACK, a SYN flood's or an unanswered attempt's
-- does not). Each record is pro-rated over the {bucket_ms} buckets its span overlaps, as in
-- volumetric-flood, so SYN retransmissions and active-timeout splits add up to the right rate. The SYN
-- share is SYN packets over all TCP packets the host receives in the bucket (FastNetMon's rule: most
-- of the host's packets are SYNs): a busy server's completed sessions bring ACKs and data that keep
-- it low. Many distinct sources are required: one source sending SYNs to many ports of one host is a
-- port scan (vertical-port-scan), not a flood. TCP packets toward a host also come from biflow
-- reverse counters (they are never SYN-only: the host initiated those connections).
--
-- A host is reported when a bucket over all three thresholds holds SYNs of this window's new flows.
--
-- Parameters: {bucket_ms:UInt32}; {min_syn_pps:Float64} (per-host overrides {override_lo:Array(IPv6)},
-- {override_hi:Array(IPv6)}, {override_syn_pps:Array(Float64)}, the first matching range wins);
-- {min_share:Float64}; {min_sources:Float64} distinct SYN sources in a bucket, divided by the sampling
-- rate down to {min_sources_sampled:Float64} (a sampled exporter sees fewer of the sources; packets are
-- already scaled); {prefilter_packets:Float64} the least SYN packets a host must receive over the
-- context to be looked at (the lowest threshold over one bucket); {span_cap_ms:Int64} how far back from
-- its end a record is spread.
--
-- Columns: victim, victim_internal, sampling, thr_syn_pps, thr_sources (in force for this host),
-- peak_syn_pps, peak_share (the SYN share in that bucket), min_share (the lowest share of the
-- over-threshold buckets), peak_sources, hot_buckets, span_from/span_to (epoch ms).
WITH
candidates AS
(
    SELECT dst_addr AS victim
    FROM {{flows}}
    WHERE proto = 6 AND bitAnd(tcp_flags, 0x12) = 0x02
    GROUP BY victim
    HAVING sum(packets) >= {prefilter_packets:Float64}
),
buckets AS
(
    SELECT victim, bucket,
           sumIf(p * share, syn) AS syn_packets,
           sum(p * share) AS tcp_packets,
           sumIf(p * share * w, syn) AS new_syn_packets,
           uniqExactIf(peer, syn AND share > 0) AS syn_sources,
           max(rate) AS bucket_rate,
           any(v_internal) AS victim_internal
    FROM
    (
        SELECT side.1 AS victim, side.2 AS peer, side.3 AS p, side.4 AS syn, side.5 AS v_internal,
               in_window AS w, sampling_rate AS rate,
               arrayJoin(range(intDiv(greatest(s, e - {span_cap_ms:Int64}), {bucket_ms:UInt32}),
                               intDiv(e, {bucket_ms:UInt32}) + 1)) AS bucket,
               if(e > s,
                  greatest(0, least(e, (bucket + 1) * {bucket_ms:UInt32}) - greatest(s, bucket * {bucket_ms:UInt32})) / (e - s),
                  1.0) AS share
        FROM
        (
            SELECT in_window, sampling_rate,
                   least(toUnixTimestamp64Milli(flow_start), toUnixTimestamp64Milli(flow_end)) AS s,
                   toUnixTimestamp64Milli(flow_end) AS e,
                   -- (host, peer, packets the host received, SYN without ACK, host internal)
                   arrayJoin([
                       (dst_addr, src_addr, packets, bitAnd(tcp_flags, 0x12) = 0x02, dst_internal),
                       (src_addr, dst_addr, reverse_packets, false, src_internal)
                   ]) AS side
            FROM {{flows}}
            WHERE proto = 6 AND (dst_addr IN candidates OR src_addr IN candidates)
        )
        WHERE side.3 > 0 AND side.1 IN candidates
    )
    GROUP BY victim, bucket
),
rated AS
(
    SELECT victim, bucket, bucket_rate, victim_internal, new_syn_packets, syn_sources,
           syn_packets / ({bucket_ms:UInt32} / 1000) AS syn_pps,
           syn_packets / greatest(tcp_packets, 1) AS syn_share,
           arrayFirstIndex((lo, hi) -> victim >= lo AND victim <= hi, {override_lo:Array(IPv6)}, {override_hi:Array(IPv6)}) AS o,
           if(o > 0, {override_syn_pps:Array(Float64)}[o], {min_syn_pps:Float64}) AS t_pps,
           greatest(least({min_sources_sampled:Float64}, {min_sources:Float64}),
                    {min_sources:Float64} / greatest(bucket_rate, 1)) AS t_sources
    FROM buckets
)
SELECT
    victim,
    any(victim_internal) AS victim_internal,
    max(bucket_rate) AS sampling,
    any(t_pps) AS thr_syn_pps,
    min(t_sources) AS thr_sources,
    max(syn_pps) AS peak_syn_pps,
    argMax(syn_share, syn_pps) AS peak_share,
    min(syn_share) AS min_share,
    max(syn_sources) AS peak_sources,
    count() AS hot_buckets,
    min(bucket) * {bucket_ms:UInt32} AS span_from,
    (max(bucket) + 1) * {bucket_ms:UInt32} AS span_to,
    sum(new_syn_packets) AS hot_new_packets
FROM rated
WHERE syn_pps >= t_pps AND syn_share >= {min_share:Float64} AND syn_sources >= t_sources
GROUP BY victim
HAVING hot_new_packets > 0
ORDER BY peak_syn_pps / thr_syn_pps DESC
LIMIT 200
