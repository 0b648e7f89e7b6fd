-- The object versions (key, ETag) already staged into this table.
SELECT source_key, etag FROM stage_load_ledger WHERE table_name = %(table)s
