
-- Beside each stage_load_ledger entry: which JSON keys the object's records carried. One row per
-- key the mapping expects (column_name set) and per unknown key (column_name NULL, the most
-- frequent 50). present counts the records holding the key, whatever its value (null included),
-- of the object's `records` JSON object records. Written by the PostgreSQL path only: Redshift's
-- COPY can't tell a missing key from a null value (docs/production.md).
CREATE TABLE IF NOT EXISTS stage_key_presence (
    table_name  VARCHAR(128) NOT NULL,
    source_key  VARCHAR(1024) NOT NULL,
    json_key    VARCHAR(256) NOT NULL,
    column_name VARCHAR(128),
    records     BIGINT NOT NULL,
    present     BIGINT NOT NULL,
    run_id      VARCHAR(256),
    loaded_at   TIMESTAMP NOT NULL
)
DISTSTYLE ALL;
