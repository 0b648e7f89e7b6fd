
-- Records that could not be staged, with where they came from and why.
CREATE TABLE IF NOT EXISTS stage_rejects (
    table_name  VARCHAR(128) NOT NULL,
    source_key  VARCHAR(1024) NOT NULL,
    source_line BIGINT,
    field       VARCHAR(128),
    reason      VARCHAR(1024) NOT NULL,
    raw_text    VARCHAR(2048),
    run_id      VARCHAR(256),
    rejected_at TIMESTAMP NOT NULL
)
DISTSTYLE ALL;
