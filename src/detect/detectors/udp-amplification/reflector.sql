-- UDP reflection/amplification, reflector side: an internal host whose amplifiable UDP service
-- (CISA alert TA14-017A's ports) answers outside addresses with far more than it is sent: the
-- requests carry a victim's spoofed address, the answers flood the victim.
--
-- Each UDP record touching an amplification port on an internal host, with an external peer, is seen
-- as requests to the host's service port and responses from it, from uniflow records and biflow
-- reverse counters alike, summed per (host, port, target) over the context. The amplification is
-- response bytes over request bytes, over the targets whose requests were seen (an exporter that
-- misses the requests, e.g. on asymmetric routes, gives no ratio; those targets are only counted).
--
-- Reported per (host, port) when its responses reach at least {min_targets} external targets (divided
-- by the sampling rate down to {min_targets_sampled}), total at least {min_bytes} bytes (scaled by
-- sampling already), amplify at least {min_ratio} times, and include this window's new flows.
--
-- Parameters: {ports:Array(UInt16)}, {min_targets:Float64}, {min_targets_sampled:Float64},
-- {min_bytes:Float64}, {min_ratio:Float64}.
-- Columns: reflector, port, sampling, thr_targets, targets, targets_without_requests, response_bytes,
-- response_packets, request_bytes, request_packets, amplification, top_targets [(addr, bytes)],
-- first_seen/last_seen (epoch ms, the responses), new_flows/new_bytes/new_packets (this window's
-- responses), exporters.
WITH
pairs AS
(
    SELECT side.1 AS reflector, side.2 AS target, side.3 AS port,
           sum(side.4) AS out_p, sum(side.5) AS out_b, sum(side.6) AS in_p, sum(side.7) AS in_b,
           countIf(in_window = 1 AND side.4 > 0) AS new_f,
           sumIf(side.5, in_window = 1) AS new_b,
           sumIf(side.4, in_window = 1) AS new_p,
           minIf(s, side.4 > 0) AS first_ms,
           maxIf(e, side.4 > 0) AS last_ms,
           max(sampling_rate) AS rate,
           groupUniqArrayIf(4)(exporter_address, side.4 > 0) AS pair_exporters
    FROM
    (
        SELECT in_window, sampling_rate, exporter_address,
               least(toUnixTimestamp64Milli(flow_start), toUnixTimestamp64Milli(flow_end)) AS s,
               toUnixTimestamp64Milli(flow_end) AS e,
               -- (host, target, service port, responses: packets, bytes, requests: packets, bytes, applies)
               arrayJoin(arrayFilter(x -> x.8, [
                   (src_addr, dst_addr, src_port, packets, bytes, reverse_packets, reverse_bytes,
                    src_internal = 1 AND dst_internal = 0 AND has({ports:Array(UInt16)}, src_port)),
                   (dst_addr, src_addr, dst_port, reverse_packets, reverse_bytes, packets, bytes,
                    dst_internal = 1 AND src_internal = 0 AND has({ports:Array(UInt16)}, dst_port))
               ])) AS side
        FROM {{flows}}
        WHERE proto = 17 AND (has({ports:Array(UInt16)}, src_port) OR has({ports:Array(UInt16)}, dst_port))
          AND src_internal != dst_internal
    )
    GROUP BY reflector, target, port
)
SELECT
    reflector,
    port,
    max(rate) AS sampling,
    greatest(least({min_targets_sampled:Float64}, {min_targets:Float64}),
             {min_targets:Float64} / greatest(sampling, 1)) AS thr_targets,
    countIf(out_p > 0) AS targets,
    countIf(out_p > 0 AND in_p = 0) AS targets_without_requests,
    sum(out_b) AS response_bytes,
    sum(out_p) AS response_packets,
    sum(in_b) AS request_bytes,
    sum(in_p) AS request_packets,
    sumIf(out_b, in_b > 0) / greatest(sumIf(in_b, out_b > 0), 1) AS amplification,
    arraySlice(arrayReverseSort(x -> x.2, groupArrayIf(100000)((toString(target), out_b), out_p > 0)), 1, 20)
        AS top_targets,
    minIf(first_ms, out_p > 0) AS first_seen,
    maxIf(last_ms, out_p > 0) AS last_seen,
    sum(new_f) AS new_flows,
    sum(new_b) AS new_bytes,
    sum(new_p) AS new_packets,
    arrayDistinct(flatten(groupArrayIf(8)(pair_exporters, out_p > 0))) AS exporters
FROM pairs
GROUP BY reflector, port
HAVING new_packets > 0
   AND targets >= thr_targets
   AND response_bytes >= {min_bytes:Float64}
   AND amplification >= {min_ratio:Float64}
ORDER BY response_bytes DESC
LIMIT 200
