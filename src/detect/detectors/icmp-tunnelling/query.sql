-- ICMP tunnelling: an internal host's ICMP or ICMPv6 echo traffic with an external host (echo request
-- 8 / 128 from the internal host, echo reply 0 / 129 back) that carries far more than ping does: large
-- payloads over many packets, or a high volume. Ping sends 64-100 byte packets (Linux 84 B IPv4 with its
-- 56-byte payload, Windows 60 B); a path MTU probe sends a few large ones; a monitoring system sends many
-- small ones to many hosts, few per pair.
--
-- Per pair over the context, reported when some of its echo flows are new in this window and
--   * large: at least {min_packets:UInt32} echo requests and a mean packet size, of the requests or of
--     the replies, of at least {min_mean_bytes:UInt32} (Elastic's ICMP tunnelling rule: echo requests of
--     256 B or more); or
--   * volume: at least {volume_bytes:UInt64} in requests and replies together.
-- {include_internal:UInt8} = 1 also evaluates pairs of two internal hosts. Packets and bytes are already
-- scaled by the sampling rate, so these thresholds apply as they are (no distinct counts here).
--
-- Columns: host (internal), peer, req_packets, req_bytes, rep_packets, rep_bytes (context), first_ms,
-- last_ms, new_flows/new_bytes/new_packets (this window), rate (sampling), v6, exporters.
SELECT
    host,
    peer,
    sumIf(packets, req = 1) AS req_packets,
    sumIf(bytes, req = 1) AS req_bytes,
    sumIf(packets, req = 0) AS rep_packets,
    sumIf(bytes, req = 0) AS rep_bytes,
    toUnixTimestamp64Milli(min(flow_start)) AS first_ms,
    toUnixTimestamp64Milli(max(flow_end)) AS last_ms,
    countIf(in_window = 1) AS new_flows,
    sumIf(bytes, in_window = 1) AS new_bytes,
    sumIf(packets, in_window = 1) AS new_packets,
    max(sampling_rate) AS rate,
    max(ip_proto = 58) AS v6,
    groupUniqArray(4)(exporter_address) AS exporters
FROM
(
    SELECT src_addr AS host, dst_addr AS peer, 1 AS req, proto AS ip_proto, bytes, packets, flow_start, flow_end,
           in_window, sampling_rate, exporter_address
    FROM {{flows}}
    WHERE ((proto = 1 AND icmp_type = 8) OR (proto = 58 AND icmp_type = 128))
      AND src_internal = 1 AND (dst_internal = 0 OR {include_internal:UInt8} = 1)
    UNION ALL
    SELECT dst_addr AS host, src_addr AS peer, 0 AS req, proto AS ip_proto, bytes, packets, flow_start, flow_end,
           in_window, sampling_rate, exporter_address
    FROM {{flows}}
    WHERE ((proto = 1 AND icmp_type = 0) OR (proto = 58 AND icmp_type = 129))
      AND dst_internal = 1 AND (src_internal = 0 OR {include_internal:UInt8} = 1)
)
GROUP BY host, peer
HAVING new_flows > 0
   AND req_packets > 0
   AND ((req_packets >= {min_packets:UInt32}
         AND greatest(req_bytes / req_packets, rep_bytes / greatest(rep_packets, 1)) >= {min_mean_bytes:UInt32})
        OR req_bytes + rep_bytes >= {volume_bytes:UInt64})
ORDER BY req_bytes + rep_bytes DESC
LIMIT 1000
