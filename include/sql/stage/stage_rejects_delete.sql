-- Forget the rejects recorded for these objects: their records are about to be staged or rejected again.
DELETE FROM stage_rejects WHERE table_name = %(table)s AND source_key = ANY(%(source_keys)s)
