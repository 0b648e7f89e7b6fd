-- Record the object version as staged (delete + insert works on both dialects).
DELETE FROM stage_load_ledger WHERE table_name = %(table)s AND source_key = %(source_key)s;
INSERT INTO stage_load_ledger
    (table_name, source_key, etag, size_bytes, lines_read, rows_staged, rows_rejected, run_id, loaded_at)
VALUES (%(table)s, %(source_key)s, %(etag)s, %(size_bytes)s, %(lines_read)s, %(rows_staged)s,
        %(rows_rejected)s, %(run_id)s, %(loaded_at)s);
