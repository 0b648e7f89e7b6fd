-- Drop what earlier versions of these objects staged, before their new versions go in.
DELETE FROM {{ table }} WHERE source_key = ANY(%(s3_keys)s);
{% include 'stage/stage_rejects_delete.sql' %};
-- An object found again is no longer missing.
DELETE FROM stage_missing_objects WHERE table_name = %(table)s AND s3_key = ANY(%(s3_keys)s);
