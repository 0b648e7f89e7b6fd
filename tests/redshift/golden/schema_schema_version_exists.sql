-- Whether the warehouse has a schema_version table yet (a first run finds none).
SELECT COUNT(*) FROM information_schema.tables
WHERE table_schema = current_schema() AND table_name = 'schema_version'