-- Forget objects whose staged rows were removed (deleted from S3, removal asked for).
DELETE FROM stage_load_ledger WHERE table_name = %(table)s AND source_key = ANY(%(source_keys)s)
