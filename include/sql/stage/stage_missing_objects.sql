-- Record a staged object that its listing no longer found, once per object: a later run
-- keeps when it was first seen missing and says whether its rows were removed.
UPDATE stage_missing_objects
SET rows_removed = %(rows_removed)s, run_id = %(run_id)s
WHERE table_name = %(table)s AND source_key = %(source_key)s;

INSERT INTO stage_missing_objects (table_name, source_key, etag, rows_staged, rows_removed, run_id, seen_missing_at)
SELECT table_name, source_key, etag, rows_staged, %(rows_removed)s, %(run_id)s, %(seen_missing_at)s
FROM stage_load_ledger l
WHERE l.table_name = %(table)s AND l.source_key = %(source_key)s
  AND NOT EXISTS (SELECT 1 FROM stage_missing_objects m WHERE m.table_name = l.table_name AND m.source_key = l.source_key);
