-- Drop what earlier versions of these objects staged, before their new versions go in.
DELETE FROM {{ table }} WHERE source_key = ANY(%(s3_keys)s);
DELETE FROM stage_rejects WHERE table_name = %(table)s AND source_key = ANY(%(s3_keys)s);
