-- DNS tunnelling by volume: an internal client sending a tunnel's volume of DNS to one resolver that
-- is not sanctioned (an Internet resolver or authoritative server reached directly, or a rogue
-- internal one). Sigma's network rules flag more than 300 kB of DNS out, or more than 1000 DNS
-- requests, per source and minute; tunnels (iodine, dnscat2, DNSExfiltrator) also pack data into long
-- query names, so their requests are far larger than ordinary ones (RFC 1035 caps a name at 255
-- octets; an ordinary query datagram is 60-100 bytes).
--
-- Requests are flows to a DNS port (UDP/TCP 53, DoT/DoQ 853 by default) from an internal client;
-- answers are flows from that port back to it, or the reverse counters of a biflow request (RFC 5103).
-- Both are summed per (client, resolver) over the lookback, whatever the number of records (one
-- fixed-port tunnel is one long flow split by active timeouts; a stub with random ports is one flow
-- per query). Requests are counted as UDP port-53 datagrams to the resolver (packets are already
-- scaled by the sampling rate, so the count needs no scaling); TCP 53, DoT and DoQ carry queries in
-- streams with handshakes and ACKs, so only their bytes are judged. Rates are per minute over the
-- pair's active span (at least one minute), not the peak minute.
--
-- Parameters: {ports:Array(UInt16)}; {sanctioned_lo:Array(IPv6)}, {sanctioned_hi:Array(IPv6)} the
-- sanctioned resolvers' ranges; {max_queries_per_minute:Float64}; {max_bytes_per_minute:Float64};
-- {large_request_bytes:Float64} average bytes per UDP request datagram (IP header included);
-- {min_large_requests:UInt64} requests in the lookback before their size is judged.
-- Columns: client, resolver, resolver_internal, queries, query_bytes (UDP 53), bytes_out, bytes_in,
-- packets_in, span_seconds, queries_per_minute, bytes_out_per_minute, avg_request_bytes, rate_hit,
-- volume_hit, size_hit, ports, protocols, new_flows/new_bytes/new_packets (this window), first_seen,
-- last_seen, rate (sampling), exporters.
SELECT
    client,
    resolver,
    any(resolver_is_internal) AS resolver_internal,
    sum(q_packets) AS queries,
    sum(q_bytes) AS query_bytes,
    sum(up_bytes) AS bytes_out,
    sum(down_bytes) AS bytes_in,
    sum(down_packets) AS packets_in,
    min(flow_start) AS first_seen,
    max(flow_end) AS last_seen,
    greatest(60, dateDiff('millisecond', first_seen, last_seen) / 1000) AS span_seconds,
    queries * 60 / span_seconds AS queries_per_minute,
    bytes_out * 60 / span_seconds AS bytes_out_per_minute,
    if(queries > 0, query_bytes / queries, 0) AS avg_request_bytes,
    queries_per_minute > {max_queries_per_minute:Float64} AS rate_hit,
    bytes_out_per_minute > {max_bytes_per_minute:Float64} AS volume_hit,
    queries >= {min_large_requests:UInt64} AND avg_request_bytes >= {large_request_bytes:Float64} AS size_hit,
    arraySort(groupUniqArray(8)(port)) AS ports,
    arraySort(groupUniqArray(4)(proto)) AS protocols,
    countIf(in_window = 1) AS new_flows,
    sumIf(up_bytes + down_bytes, in_window = 1) AS new_bytes,
    sumIf(up_packets + down_packets, in_window = 1) AS new_packets,
    max(sampling_rate) AS rate,
    groupUniqArray(4)(exporter_address) AS exporters
FROM
(
    -- Requests (and, from biflow exporters, their answers in the reverse counters).
    SELECT src_addr AS client, dst_addr AS resolver, dst_internal AS resolver_is_internal, dst_port AS port,
           proto,
           if(proto = 17 AND dst_port = 53, packets, 0) AS q_packets,
           if(proto = 17 AND dst_port = 53, bytes, 0) AS q_bytes,
           bytes AS up_bytes, packets AS up_packets, reverse_bytes AS down_bytes, reverse_packets AS down_packets,
           in_window, flow_start, flow_end, sampling_rate, exporter_address
    FROM {{flows}}
    WHERE src_internal = 1 AND proto IN (6, 17) AND has({ports:Array(UInt16)}, dst_port)
      AND NOT arrayExists((lo, hi) -> dst_addr >= lo AND dst_addr <= hi,
                          {sanctioned_lo:Array(IPv6)}, {sanctioned_hi:Array(IPv6)})
    UNION ALL
    -- Answers (and, from biflow exporters, requests in the reverse counters of a record the
    -- resolver's side opened).
    SELECT dst_addr AS client, src_addr AS resolver, src_internal AS resolver_is_internal, src_port AS port,
           proto,
           if(proto = 17 AND src_port = 53, reverse_packets, 0) AS q_packets,
           if(proto = 17 AND src_port = 53, reverse_bytes, 0) AS q_bytes,
           reverse_bytes AS up_bytes, reverse_packets AS up_packets, bytes AS down_bytes, packets AS down_packets,
           in_window, flow_start, flow_end, sampling_rate, exporter_address
    FROM {{flows}}
    WHERE dst_internal = 1 AND proto IN (6, 17) AND has({ports:Array(UInt16)}, src_port)
      -- A record between two DNS ports of internal hosts is already a request above.
      AND NOT (src_internal = 1 AND has({ports:Array(UInt16)}, dst_port))
      AND NOT arrayExists((lo, hi) -> src_addr >= lo AND src_addr <= hi,
                          {sanctioned_lo:Array(IPv6)}, {sanctioned_hi:Array(IPv6)})
)
GROUP BY client, resolver
HAVING new_flows > 0 AND (rate_hit OR volume_hit OR size_hit)
ORDER BY bytes_out DESC
LIMIT 1000
