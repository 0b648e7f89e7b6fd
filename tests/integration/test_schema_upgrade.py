"""A warehouse deployed before a column was renamed is upgraded in place by the next staging run.

The ledger tables named the object key ``s3_key`` before it became ``source_key`` (as in the
staging tables and stage_rejects). A warehouse of that age, with its ledger, gets the DDL again
(its recorded schema_version is older): ``sparkify.schema`` renames the old columns first, in the
same transaction, so nothing is lost and the ledger still skips the objects it staged.
Against the real PostgreSQL and S3 servers; the old warehouse is built from the old DDL.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from support.pipeline import (
    execute, query, replace_bucket_contents, reset_warehouse, s3_client, stage_operator, window_context,
)
from scripts.sample_data import generate
from sparkify.catalog import CREATE_ORDER
from sparkify.warehouse import split_statements

WINDOW = ("2018-11-01T00:00:00Z", "2018-11-01T01:00:00Z")
EVENTS_KEY = "log_data/2018/11/2018-11-01-events.json"
GONE_KEY = "log_data/2018/10/2018-10-31-events.json"  # staged once, since deleted from S3
# The tables whose object key column was s3_key before this rename.
RENAMED = ("stage_load_ledger", "stage_key_presence", "stage_missing_objects")
OLD_VERSION = "the DDL before the rename"


@pytest.fixture
def stack(tmp_path, airflow_db):
    generate(tmp_path / "data", seed=5, songs=5, start_day=date(2018, 11, 1), days=1, events_per_day=40, users=3)
    replace_bucket_contents(airflow_db, tmp_path / "data")
    reset_warehouse(airflow_db)
    return airflow_db


def columns(stack, table: str) -> list[str]:
    return [name for (name,) in query(stack, "SELECT column_name FROM information_schema.columns "
                                             "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                                      (table,))]


def create_old_warehouse(stack) -> None:
    """Every table as the DDL before the rename created it (today's DDL, the renamed tables with
    s3_key, their primary keys and index included), and its version recorded."""
    task = stage_operator("stage_events")
    for table in CREATE_ORDER:
        ddl = task._sql(f"create/{table}.sql")
        if table in RENAMED:
            ddl = ddl.replace("source_key", "s3_key")
        for statement in split_statements(ddl):
            execute(stack, statement)
    execute(stack, "INSERT INTO schema_version (version, applied_at, run_id) VALUES (%s, '2018-10-31', 'old')",
            (OLD_VERSION,))


def test_old_key_columns_are_renamed_keeping_the_ledger(stack):
    create_old_warehouse(stack)
    head = s3_client(stack).head_object(Bucket=stack.bucket, Key=EVENTS_KEY)
    etag, size = head["ETag"].strip('"'), head["ContentLength"]
    loaded_at = datetime(2018, 11, 1, 1, 5)
    execute(stack, "INSERT INTO stage_load_ledger (table_name, s3_key, etag, size_bytes, lines_read, rows_staged, "
                   "rows_rejected, run_id, loaded_at) VALUES ('staging_events', %s, %s, %s, 40, 40, 0, 'old-run', %s)",
            (EVENTS_KEY, etag, size, loaded_at))
    execute(stack, "INSERT INTO stage_key_presence (table_name, s3_key, json_key, column_name, records, present, "
                   "run_id, loaded_at) VALUES ('staging_events', %s, 'userId', 'userid', 40, 40, 'old-run', %s)",
            (EVENTS_KEY, loaded_at))
    execute(stack, "INSERT INTO stage_missing_objects (table_name, s3_key, etag, rows_staged, rows_removed, run_id, "
                   "seen_missing_at) VALUES ('staging_events', %s, 'gone-etag', 12, false, 'old-run', %s)",
            (GONE_KEY, loaded_at))
    for table in RENAMED:
        assert "s3_key" in columns(stack, table) and "source_key" not in columns(stack, table), table
    ledger = query(stack, "SELECT * FROM stage_load_ledger")
    presence = query(stack, "SELECT * FROM stage_key_presence")
    missing = query(stack, "SELECT * FROM stage_missing_objects")

    # The next run renames the columns and skips the object its ledger holds at that ETag.
    result = stage_operator("stage_events").execute(window_context(*WINDOW, run_id="after-the-rename"))
    assert (result["objects_listed"], result["objects_new"], result["rows_staged"]) == (1, 0, 0)
    for table in RENAMED:
        found = columns(stack, table)
        assert "source_key" in found and "s3_key" not in found, (table, found)
        assert found.index("source_key") == 1, "renamed in place, not added at the end"
    assert query(stack, "SELECT * FROM stage_load_ledger") == ledger
    assert query(stack, "SELECT source_key, etag, run_id FROM stage_load_ledger") == [(EVENTS_KEY, etag, "old-run")]
    assert query(stack, "SELECT * FROM stage_key_presence") == presence
    assert query(stack, "SELECT * FROM stage_missing_objects") == missing
    assert query(stack, "SELECT count(*) FROM staging_events") == [(0,)]
    # The primary key and index follow the rename.
    [pkey] = query(stack, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                          "WHERE conrelid = 'stage_load_ledger'::regclass AND contype = 'p'")
    assert pkey == ("PRIMARY KEY (table_name, source_key)",)
    [index] = query(stack, "SELECT indexdef FROM pg_indexes WHERE indexname = 'stage_key_presence_source'")
    assert index[0].endswith("(table_name, source_key)")
    [(version, run_id)] = query(stack, "SELECT version, run_id FROM schema_version")
    assert version != OLD_VERSION and run_id == "after-the-rename"

    # Upgraded, the warehouse stages as any: a changed object replaces its ledger entry and key presence.
    s3_client(stack).put_object(Bucket=stack.bucket, Key=EVENTS_KEY,
                                Body=s3_client(stack).get_object(Bucket=stack.bucket, Key=EVENTS_KEY)["Body"].read()
                                + b"\n")
    result = stage_operator("stage_events").execute(window_context(*WINDOW, run_id="changed"))
    assert (result["objects_new"], result["rows_staged"]) == (1, 40)
    assert query(stack, "SELECT source_key, run_id FROM stage_load_ledger") == [(EVENTS_KEY, "changed")]
    assert query(stack, "SELECT DISTINCT source_key, run_id FROM stage_key_presence") == [(EVENTS_KEY, "changed")]
    assert query(stack, "SELECT source_key FROM stage_missing_objects") == [(GONE_KEY,)]
