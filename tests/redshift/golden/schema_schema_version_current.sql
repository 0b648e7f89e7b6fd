-- Whether the DDL last applied is the version this code renders.
SELECT COUNT(*) FROM schema_version WHERE version = %(version)s