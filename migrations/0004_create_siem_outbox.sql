-- SIEM forwarding: the findings table is the outbox; this table keeps each destination's place in it.
--
-- siem_outbox: one row per destination (ReplacingMergeTree on `revision`: read with FINAL). Every
-- finding version at or below `position` has been sent to the destination (written and flushed to
-- its connection), skipped by its filter, or replaced by a later version that was sent. The sent
-- (id, version) pairs just below and above the position are kept in sent_ids/sent_versions, so that a
-- restart reading again from a little before the position (versions come from each writer's clock
-- and may land late) does not send them twice.
CREATE TABLE IF NOT EXISTS siem_outbox
(
    destination String,
    position UInt64,
    sent_ids Array(String),
    sent_versions Array(UInt64),
    saved_at DateTime64(3, 'UTC'),
    revision UInt64
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY destination;

-- The forwarder reads findings by version (every row, not FINAL: each row is one update).
ALTER TABLE findings ADD INDEX IF NOT EXISTS version_minmax version TYPE minmax GRANULARITY 1;
