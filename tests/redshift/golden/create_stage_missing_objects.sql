
-- Staged objects that a later listing no longer found (deleted, or expired by a lifecycle
-- rule). Their rows stay staged unless the run was asked to remove them (rows_removed).
CREATE TABLE IF NOT EXISTS stage_missing_objects (
    table_name      VARCHAR(128) NOT NULL,
    source_key      VARCHAR(1024) NOT NULL,
    etag            VARCHAR(128) NOT NULL,
    rows_staged     BIGINT,
    rows_removed    BOOLEAN NOT NULL,
    run_id          VARCHAR(256) NOT NULL,
    seen_missing_at TIMESTAMP NOT NULL,
    PRIMARY KEY (table_name, source_key)
)
DISTSTYLE ALL;