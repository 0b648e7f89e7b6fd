-- Forget the key counts of these objects: their new versions are being staged, or their rows removed.
DELETE FROM stage_key_presence WHERE table_name = %(table)s AND source_key = ANY(%(source_keys)s)
