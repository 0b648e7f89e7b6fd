-- Re-read the staged versions under the locks: another run may have just loaded some.
SELECT source_key, etag FROM stage_load_ledger WHERE table_name = %(table)s AND source_key = ANY(%(source_keys)s)
