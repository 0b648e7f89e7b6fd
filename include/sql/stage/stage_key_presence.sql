-- Which JSON keys a staged object's records carried (one row per key), beside its ledger entry.
INSERT INTO stage_key_presence (table_name, source_key, json_key, column_name, records, present, run_id, loaded_at)
VALUES (%(table)s, %(source_key)s, %(json_key)s, %(column_name)s, %(records)s, %(present)s, %(run_id)s, %(loaded_at)s)
