
-- The version (a hash of every create/*.sql file as rendered) of the DDL last applied. While it
-- is current, runs skip the DDL; a changed file (a new table, column default or index) applies
-- all of it again, each statement idempotent.
CREATE TABLE IF NOT EXISTS schema_version (
    version    VARCHAR(64) NOT NULL,
    applied_at TIMESTAMP NOT NULL,
    run_id     VARCHAR(256)
)
DISTSTYLE ALL;