-- The staging table's data columns in order: their types drive parsing on the PostgreSQL path
-- and their order is what a JSONPaths file maps onto.
SELECT column_name, data_type, character_maximum_length, is_nullable
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = %(table)s
  AND column_name NOT IN ('source_key', 'source_line')
ORDER BY ordinal_position
