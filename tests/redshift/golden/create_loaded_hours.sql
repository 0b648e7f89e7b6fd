
-- Every hour whose events have been loaded into the star schema, by any run.
-- Dimension loads read "the latest event so far" over these hours only, which makes the
-- result independent of the order runs happen in.
CREATE TABLE IF NOT EXISTS loaded_hours (
    hour_start TIMESTAMP NOT NULL PRIMARY KEY,
    run_id     VARCHAR(256),
    loaded_at  TIMESTAMP NOT NULL
)
DISTSTYLE ALL SORTKEY (hour_start);