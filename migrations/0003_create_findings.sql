-- Detection: findings, what each detector run added to them, analyst actions, and the runs themselves.
--
-- findings: one row per version of a finding; ReplacingMergeTree keeps the highest `version` per id,
-- so read with FINAL. The id is stable (detector + key entities + time bucket): running a window
-- again, or extending ongoing activity, writes a new version of the same id instead of a new finding.
-- Times are those of the traffic (flow_start/flow_end), never of the run. Addresses are IPv6 with IPv4
-- as ::ffff:a.b.c.d, as in flows; evidence is detector-specific JSON.
CREATE TABLE IF NOT EXISTS findings
(
    id String,
    version UInt64,
    detector LowCardinality(String),
    key String,
    title String,
    severity Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4),
    confidence Float32,
    status Enum8('open' = 1, 'acknowledged' = 2, 'resolved' = 3, 'suppressed' = 4),
    tactic_ids Array(LowCardinality(String)),
    technique_ids Array(LowCardinality(String)),
    src_ip Nullable(IPv6),
    dst_ip Nullable(IPv6),
    related_ips Array(IPv6),
    exporters Array(IPv6),
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    flows UInt64,
    bytes UInt64,
    packets UInt64,
    evidence String CODEC(ZSTD(1)),
    windows UInt32,
    run_mode Enum8('scheduled' = 1, 'backfill' = 2),
    run_id String,
    forward UInt8,
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    INDEX last_seen_minmax last_seen TYPE minmax GRANULARITY 1,
    INDEX updated_at_minmax updated_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id
TTL toDateTime(last_seen) + toIntervalDay(365)
SETTINGS index_granularity = 1024;

-- finding_contributions: what one detector window added to a finding (its flows, bytes, packets and
-- traffic span). Keyed by (finding, window), so a window run twice replaces its contribution instead
-- of adding it again; a finding's counters are the sums over its windows.
CREATE TABLE IF NOT EXISTS finding_contributions
(
    finding_id String,
    window_key String,
    run_mode Enum8('scheduled' = 1, 'backfill' = 2),
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    flows UInt64,
    bytes UInt64,
    packets UInt64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (finding_id, window_key)
TTL toDateTime(last_seen) + toIntervalDay(365);

-- finding_events: the history of a finding as analysts act on it (status changes with a comment and
-- the acting user). Append-only.
CREATE TABLE IF NOT EXISTS finding_events
(
    finding_id String,
    at DateTime64(3, 'UTC'),
    actor String,
    action LowCardinality(String),
    from_status LowCardinality(String),
    to_status LowCardinality(String),
    comment String
)
ENGINE = MergeTree
ORDER BY (finding_id, at);

-- detector_runs: one row per finished run (successful or not). A detector's watermark is the end of
-- its latest successful scheduled window, so a restart resumes where the last run ended: no window
-- skipped, none run twice (a window that ran but whose row was not written runs again, and its
-- findings are updated in place, not duplicated).
CREATE TABLE IF NOT EXISTS detector_runs
(
    run_id String,
    detector LowCardinality(String),
    run_mode Enum8('scheduled' = 1, 'backfill' = 2),
    window_from DateTime64(3, 'UTC'),
    window_to DateTime64(3, 'UTC'),
    started_at DateTime64(3, 'UTC'),
    finished_at DateTime64(3, 'UTC'),
    duration_ms UInt32,
    observations UInt32,
    findings_created UInt32,
    findings_updated UInt32,
    status Enum8('ok' = 1, 'error' = 2),
    error String,
    worker String
)
ENGINE = MergeTree
ORDER BY (detector, run_mode, window_to)
TTL toDateTime(finished_at) + toIntervalDay(90);

-- Backfills select flows by their own times; flow_end already has a minmax index (0001).
ALTER TABLE flows ADD INDEX IF NOT EXISTS flow_start_minmax flow_start TYPE minmax GRANULARITY 1;
