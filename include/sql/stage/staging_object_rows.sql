-- Drop what earlier versions of these objects staged, before their new versions go in.
DELETE FROM {{ table }} WHERE source_key = ANY(%(source_keys)s);
{% include 'stage/stage_rejects_delete.sql' %};
