-- The object versions (key, ETag) already staged into this table.
SELECT s3_key, etag FROM stage_load_ledger WHERE table_name = %(table)s
