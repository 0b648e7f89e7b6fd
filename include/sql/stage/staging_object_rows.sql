-- Drop what an earlier version of this object staged, before its new version goes in.
DELETE FROM {{ table }} WHERE source_key = %(s3_key)s;
DELETE FROM stage_rejects WHERE table_name = %(table)s AND source_key = %(s3_key)s;
