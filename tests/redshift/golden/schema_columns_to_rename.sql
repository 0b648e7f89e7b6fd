-- Which of the renamed columns (sparkify.catalog.RENAMED_COLUMNS) still have their old name.
-- old_columns lists them in one bound string, ',table.column,table.column,' (Redshift has no
-- arrays to bind a list as); the names are plain lower-case identifiers, so only a whole
-- table.column matches.
SELECT table_name, column_name
FROM information_schema.columns
WHERE table_schema = current_schema()
  AND POSITION(',' || table_name || '.' || column_name || ',' IN %(old_columns)s) > 0
ORDER BY table_name, column_name