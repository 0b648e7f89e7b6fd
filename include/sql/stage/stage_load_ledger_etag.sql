-- Re-read the staged version under the lock: another run may have just loaded it.
SELECT etag FROM stage_load_ledger WHERE table_name = %(table)s AND s3_key = %(s3_key)s
