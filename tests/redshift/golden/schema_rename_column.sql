-- Give a column its new name (sparkify.catalog.RENAMED_COLUMNS), in place: its rows, constraints
-- and indexes stay. DDL binds no parameters, so the names are written in: sparkify.schema
-- validates them as plain lower-case identifiers, and they are quoted (a reserved word works too).
ALTER TABLE "stage_load_ledger" RENAME COLUMN "s3_key" TO "source_key"