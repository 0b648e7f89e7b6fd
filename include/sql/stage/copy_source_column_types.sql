-- Types of the bookkeeping columns a binary COPY appends after the data columns, in COPY order.
SELECT data_type FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = %(table)s
  AND column_name IN ('source_key', 'source_line')
ORDER BY column_name
