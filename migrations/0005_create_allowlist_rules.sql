-- allowlist_rules: analyst suppressions. A rule drops a detector's observations (before they become
-- findings) whose source is in src_cidr and whose destination is in dst_cidr; an empty side matches
-- any address, an empty detector every detector. Rules come from PATCH /api/v1/findings/{id} (status
-- suppressed with an allowlist) and are removed through DELETE /api/v1/allowlist/{id}. One row per
-- version (ReplacingMergeTree on `version`, read with FINAL); a removed rule keeps a row with removed = 1.
CREATE TABLE IF NOT EXISTS allowlist_rules
(
    id String,
    version UInt64,
    detector LowCardinality(String),
    src_cidr String,
    dst_cidr String,
    comment String,
    created_by String,
    created_at DateTime64(3, 'UTC'),
    expires_at Nullable(DateTime64(3, 'UTC')),
    finding_id String,
    removed UInt8,
    removed_by String,
    removed_at Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

-- The rule an analyst action created or removed, in the finding's history.
ALTER TABLE finding_events ADD COLUMN IF NOT EXISTS rule_id String DEFAULT '';
