-- Forget objects whose staged rows were removed (deleted from S3, removal asked for).
DELETE FROM stage_load_ledger WHERE table_name = %(table)s AND s3_key = ANY(%(s3_keys)s)
