-- detector_settings: changes made through PATCH /api/v1/detectors/{id} (enabled, interval, lookback,
-- cool-down, parameters), applied over the configuration file at every start so that they survive
-- restarts. `settings` holds only the fields changed through the API (JSON, the API's field names);
-- one row per change, the latest version per detector wins (read with FINAL).
CREATE TABLE IF NOT EXISTS detector_settings
(
    detector String,
    version UInt64,
    settings String,
    updated_by String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY detector;
