-- Record the DDL version just applied (one row: the latest).
DELETE FROM schema_version;
INSERT INTO schema_version (version, applied_at, run_id) VALUES (%(version)s, %(applied_at)s, %(run_id)s)