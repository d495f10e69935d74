-- flows: one row per decoded flow record.
--
-- Time model: every table is partitioned, ordered and expired by time_received, the collector's clock
-- when the export packet arrived (exporter clocks can be wrong, and partitions must not follow them).
-- flow_start/flow_end are the flow's own absolute UTC times (sysUpTime-relative fields converted at
-- decode); a minmax index lets range queries on flow_end skip granules. Detectors read windows of
-- time_received, so a late export (active timeout up to 30 min) is still seen exactly once.
--
-- bytes/packets are already multiplied by sampling_rate (the raw rate is kept). Addresses are IPv6,
-- with IPv4 as ::ffff:a.b.c.d. direction: 'unknown' where the exporter does not say.
-- exporter_address is LowCardinality (a few hundred exporters at most): filtering a day of flows by
-- exporter compares dictionary keys instead of 16-byte addresses (the runner allows the type).
CREATE TABLE IF NOT EXISTS flows
(
    time_received DateTime('UTC') CODEC(DoubleDelta, LZ4),
    flow_start DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    flow_end DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    exporter_address LowCardinality(IPv6),
    version UInt8 CODEC(ZSTD(1)),
    observation_domain_id UInt32 CODEC(ZSTD(1)),
    in_if UInt32 CODEC(ZSTD(1)),
    out_if UInt32 CODEC(ZSTD(1)),
    src_addr IPv6 CODEC(ZSTD(1)),
    dst_addr IPv6 CODEC(ZSTD(1)),
    src_port UInt16 CODEC(ZSTD(1)),
    dst_port UInt16 CODEC(ZSTD(1)),
    proto UInt8 CODEC(ZSTD(1)),
    tcp_flags UInt16 CODEC(ZSTD(1)),
    tos UInt8 CODEC(ZSTD(1)),
    bytes UInt64 CODEC(T64, ZSTD(1)),
    packets UInt64 CODEC(T64, ZSTD(1)),
    sampling_rate UInt32 CODEC(T64, ZSTD(1)),
    src_as UInt32 CODEC(ZSTD(1)),
    dst_as UInt32 CODEC(ZSTD(1)),
    src_mask UInt8 CODEC(ZSTD(1)),
    dst_mask UInt8 CODEC(ZSTD(1)),
    next_hop IPv6 CODEC(ZSTD(1)),
    direction Enum8('unknown' = 0, 'ingress' = 1, 'egress' = 2) CODEC(ZSTD(1)),
    icmp_type UInt8 CODEC(ZSTD(1)),
    icmp_code UInt8 CODEC(ZSTD(1)),
    src_vlan UInt16 CODEC(ZSTD(1)),
    dst_vlan UInt16 CODEC(ZSTD(1)),
    end_reason UInt8 CODEC(ZSTD(1)),
    firewall_event UInt8 CODEC(ZSTD(1)),
    reverse_bytes UInt64 CODEC(T64, ZSTD(1)),
    reverse_packets UInt64 CODEC(T64, ZSTD(1)),
    INDEX flow_end_minmax flow_end TYPE minmax GRANULARITY 1,
    INDEX dst_addr_bloom dst_addr TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX dst_port_bloom dst_port TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time_received)
ORDER BY (toStartOfFiveMinutes(time_received), src_addr, dst_addr)
TTL time_received + toIntervalDay(30)
-- The deduplication window makes a spool batch replayed after a crash (same insert_deduplication_token)
-- a no-op instead of a second copy.
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;
