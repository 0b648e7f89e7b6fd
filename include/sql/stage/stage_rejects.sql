INSERT INTO stage_rejects (table_name, source_key, source_line, field, reason, raw_text, run_id, rejected_at)
VALUES (%(table)s, %(source_key)s, %(source_line)s, %(field)s, %(reason)s, %(raw_text)s, %(run_id)s, %(rejected_at)s)
