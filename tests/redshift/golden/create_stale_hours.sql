
-- Loaded hours whose staged events changed after they were loaded (late, rewritten or removed
-- records), queued by staging and taken by the next songplays load, which re-derives them.
CREATE TABLE IF NOT EXISTS stale_hours (
    hour_start   TIMESTAMP NOT NULL,
    rows_before  BIGINT,
    rows_after   BIGINT,
    source_table VARCHAR(128) NOT NULL,
    run_id       VARCHAR(256) NOT NULL,
    queued_at    TIMESTAMP NOT NULL
)
DISTSTYLE ALL;