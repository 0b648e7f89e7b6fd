{% import 'macros.sql' as m with context %}
-- One row per staged S3 object: the version (ETag) loaded and what it gave.
-- A later run skips an object whose ETag is unchanged; a new ETag replaces its rows.
-- lines_read counts the object's records apart from what became of each (PostgreSQL: its JSON
-- records, one however many lines it spans, none for blank lines; Redshift: the lines its COPY
-- scanned), so lines_read = rows_staged + rows_rejected shows that no record was lost.
CREATE TABLE IF NOT EXISTS stage_load_ledger (
    table_name    VARCHAR(128) NOT NULL,
    source_key    VARCHAR(1024) NOT NULL,
    etag          VARCHAR(128) NOT NULL,
    size_bytes    BIGINT,
    lines_read    BIGINT,
    rows_staged   BIGINT,
    rows_rejected BIGINT,
    run_id        VARCHAR(256),
    loaded_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (table_name, source_key)
){{ m.distribution('ALL') }};
