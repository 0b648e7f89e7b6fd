-- Re-read the staged versions under the locks: another run may have just loaded some.
SELECT s3_key, etag FROM stage_load_ledger WHERE table_name = %(table)s AND s3_key = ANY(%(s3_keys)s)
