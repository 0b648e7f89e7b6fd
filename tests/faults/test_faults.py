"""Faults injected for real while sparkify_etl runs, then retried: the warehouse must end up
identical to a clean run, with no row lost and none duplicated.

The DAG's tasks run in a child process (``fault_harness.py``: each task's ``execute`` with
its templates rendered for the window, no metadata DB), so a fault can hit the task without
hitting pytest. Faults:

* the S3 endpoint (moto) stops while ``stage_events`` streams a 200,000-line day file;
* PostgreSQL is restarted (fast shutdown) while that COPY runs;
* PostgreSQL crashes (immediate shutdown, WAL recovery on start) while a re-run of
  ``load_songplays_fact`` has replaced the window's rows but not committed;
* the task process is SIGKILLed while that COPY runs.

Each test proves the fault landed mid-operation (the COPY had sent some but not all rows; the
S3 body was cut short; the fact load held its locks with an open write transaction), that
nothing partial is visible afterwards, then retries the tasks that did not finish and compares
with the clean run: star schema row for row, staged rows per object, the ledger (minus run
ids and timestamps), rejects and loaded hours.

Faults are placed by polling PostgreSQL (``pg_stat_progress_copy``, ``pg_stat_activity``,
``pg_locks``), never by sleeping. To land a fault mid-object however fast staging is, the task
process is frozen (SIGSTOP) once its COPY has passed 20% of the file, the fault is injected,
and the process resumes (SIGCONT) into it. Every test leaves both servers running, the bucket
holding the dataset with its original ETags; the module leaves an empty warehouse and bucket.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

from fault_tools import (
    STAGING_TABLES, TaskProcess, backend_gone, crash_postgres, forget_metadata_connections, incomplete_read,
    object_rows, rows, run_tasks, staging_integrity, wait_for, wait_for_copy, warehouse_state,
)
from support.model import expected_warehouse, read_events, read_songs
from support.pipeline import reset_warehouse, s3_client
from scripts.sample_data import generate
from scripts.stack.processes import file_size as log_size, log_since
from scripts.upload_data import make_client, upload_dir

WINDOW = ("2018-11-01T10:00:00Z", "2018-11-01T14:00:00Z")
MODEL_WINDOW = (datetime(2018, 11, 1, 10), datetime(2018, 11, 1, 14))
EVENTS = 200_000
EVENTS_KEY = "log_data/2018/11/2018-11-01-events.json"
FAULT_AT = EVENTS // 5  # rows the COPY must have sent before a fault is injected


@dataclass
class Dataset:
    path: Path
    lines: dict[str, dict[str, int]]  # staging table -> S3 key -> non-blank lines in the file
    etags: dict[str, str]  # S3 key -> ETag as uploaded


def bucket_etags(stack) -> dict[str, str]:
    client = s3_client(stack)
    return {
        obj["Key"]: obj["ETag"].strip('"')
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
        for obj in page.get("Contents", [])
    }


def empty_bucket(stack) -> None:
    client = s3_client(stack)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=stack.bucket, Delete={"Objects": keys})


def upload_dataset(stack, path: Path) -> None:
    """Make the bucket hold exactly the dataset, uploaded by the project's uploader."""
    empty_bucket(stack)
    upload_dir(path, stack.bucket, make_client(stack.s3_endpoint))


def restore_servers(stack, dataset: Dataset | None) -> None:
    """Both servers running, the bucket holding the dataset exactly as uploaded."""
    if not stack.postgres_running():
        stack.start_postgres()
    forget_metadata_connections()
    if not stack.s3_running():
        stack.start_s3()
    if dataset is not None and bucket_etags(stack) != dataset.etags:
        upload_dataset(stack, dataset.path)


@pytest.fixture(scope="module")
def stack(servers):
    yield servers
    # Leave what a fresh session has: both servers up, an empty warehouse and bucket.
    TaskProcess.stop_all()
    restore_servers(servers, None)
    reset_warehouse(servers)
    empty_bucket(servers)


@pytest.fixture(scope="module")
def dataset(stack, tmp_path_factory) -> Dataset:
    path = tmp_path_factory.mktemp("faults-dataset")
    generate(path, seed=11, songs=300, start_day=date(2018, 11, 1), days=1, events_per_day=EVENTS, users=60)
    upload_dataset(stack, path)
    lines: dict[str, dict[str, int]] = {}
    for table, folder in (("staging_events", "log_data"), ("staging_songs", "song_data")):
        lines[table] = {
            file.relative_to(path).as_posix(): sum(1 for line in file.read_bytes().split(b"\n") if line.strip())
            for file in sorted((path / folder).rglob("*.json"))
        }
    assert lines["staging_events"] == {EVENTS_KEY: EVENTS}
    return Dataset(path, lines, bucket_etags(stack))


@pytest.fixture(scope="module")
def order() -> list[str]:
    from fault_harness import load_dag, task_order

    return task_order(load_dag())


@pytest.fixture(scope="module")
def clean(stack, dataset, tmp_path_factory) -> dict:
    """The warehouse after one clean run of the window, checked against the independent model."""
    reset_warehouse(stack)
    started = time.monotonic()
    run_tasks(["all"], "clean", WINDOW, tmp_path_factory.mktemp("clean") / "run.log")
    seconds = time.monotonic() - started
    state = warehouse_state(stack)
    for table in STAGING_TABLES:
        figures = staging_integrity(stack, table, dataset.lines[table])
        assert figures["lost"] == figures["duplicated"] == figures["unexpected"] == 0, (table, figures)
    model = expected_warehouse(read_events(dataset.path), read_songs(dataset.path), [MODEL_WINDOW])
    assert sorted((row[1:] for row in state["songplays"]), key=repr) == model.songplays
    assert {row[0]: row[1:] for row in state["users"]} == model.users
    assert {row[0]: row[1:] for row in state["songs"]} == model.songs
    assert {row[0]: row[1:] for row in state["artists"]} == model.artists
    assert {row[0]: row[1:] for row in state["time"]} == model.time
    assert len(state["songplays"]) > 10_000
    print(f"\n[faults] clean run: {len(state['songplays']):,} songplays, {EVENTS:,} events staged, {seconds:.1f} s")
    return state


@pytest.fixture
def warehouse(stack, dataset, clean):
    """An empty warehouse; afterwards, healthy servers and the dataset in the bucket again."""
    reset_warehouse(stack)
    yield stack
    TaskProcess.stop_all()
    restore_servers(stack, dataset)


def assert_like_clean(stack, clean: dict, dataset: Dataset, label: str, started: float, fault: str) -> None:
    figures = {table: staging_integrity(stack, table, dataset.lines[table]) for table in STAGING_TABLES}
    for table, found in figures.items():
        assert found["lost"] == 0 and found["duplicated"] == 0 and found["unexpected"] == 0, (table, found)
        assert found["rows"] == found["expected"], (table, found)
    state = warehouse_state(stack)
    differing = {part: (len(state[part]), len(expected)) for part, expected in clean.items() if state[part] != expected}
    assert not differing, f"differs from the clean run (rows now, rows clean): {differing}"
    lost = sum(found["lost"] for found in figures.values())
    duplicated = sum(found["duplicated"] for found in figures.values())
    print(
        f"\n[faults] {label}: {fault}; after the retry: identical to the clean run "
        f"({len(state['songplays']):,} songplays, {figures['staging_events']['rows']:,} + "
        f"{figures['staging_songs']['rows']:,} staged rows), rows lost {lost}, duplicated {duplicated}; "
        f"{time.monotonic() - started:.1f} s"
    )


def assert_nothing_staged(stack, key: str = EVENTS_KEY) -> None:
    assert object_rows(stack, "staging_events", key) == {"staged": 0, "ledger": 0, "rejects": 0}, \
        "the failed attempt left part of the object staged or recorded"


def test_s3_endpoint_stops_mid_stage(warehouse, dataset, clean, order, tmp_path):
    stack, started = warehouse, time.monotonic()
    # Songs first, so objects staged before the fault meet the restarted, re-filled bucket.
    tasks = [task for task in order if task != "stage_songs"]
    tasks.insert(tasks.index("stage_events"), "stage_songs")
    attempt = TaskProcess(tasks, "fault_s3", WINDOW, tmp_path / "attempt-1.log")
    progress = wait_for_copy(stack, "staging_events", FAULT_AT, attempt)
    attempt.signal(signal.SIGSTOP)  # freeze it mid-object, whatever the machine's speed
    stack.stop_s3()
    assert not stack.s3_running()
    attempt.signal(signal.SIGCONT)

    assert attempt.wait() == 1
    assert attempt.failed == ["stage_events"]
    cut = incomplete_read(attempt.output())
    assert cut is not None, f"stage_events did not fail on a cut S3 stream:\n{attempt.tail()}"
    assert 0 < cut[0] < cut[1], cut
    wait_for(lambda: backend_gone(stack, progress.pid), "the COPY's backend to end")
    assert_nothing_staged(stack)
    assert rows(stack, "SELECT count(*) FROM songplays")[0][0] == 0

    songs_ledger_sql = ("SELECT source_key, etag, loaded_at FROM stage_load_ledger WHERE table_name = 'staging_songs' "
                        "ORDER BY source_key")
    songs_ledger = rows(stack, songs_ledger_sql)
    assert len(songs_ledger) == len(dataset.lines["staging_songs"])

    # moto keeps objects in memory: it restarts empty. The same bytes give the same ETags,
    # so the ledger knows the song files staged before the fault and the retry skips them.
    stack.start_s3()
    upload_dataset(stack, dataset.path)
    assert bucket_etags(stack) == dataset.etags
    run_tasks(attempt.remaining(tasks), "fault_s3", WINDOW, tmp_path / "attempt-2.log")
    assert rows(stack, songs_ledger_sql) == songs_ledger, "the retry staged unchanged song files again"
    assert_like_clean(
        stack, clean, dataset, "S3 endpoint stopped mid-stage", started,
        f"stopped after {progress.tuples:,}/{EVENTS:,} rows copied, body cut at {cut[0]:,} of {cut[1]:,} bytes",
    )


def test_postgres_restarts_mid_stage(warehouse, dataset, clean, order, tmp_path):
    stack, started = warehouse, time.monotonic()
    attempt = TaskProcess(["all"], "fault_pg_restart", WINDOW, tmp_path / "attempt-1.log")
    progress = wait_for_copy(stack, "staging_events", FAULT_AT, attempt)
    attempt.signal(signal.SIGSTOP)
    stack.stop_postgres()  # fast shutdown: terminates the COPY's backend, rolls its transaction back
    assert not stack.postgres_running()
    attempt.signal(signal.SIGCONT)

    assert attempt.wait() == 1
    assert attempt.failed == ["stage_events"]
    assert "OperationalError" in attempt.output(), attempt.tail()
    stack.start_postgres()
    forget_metadata_connections()
    assert_nothing_staged(stack)

    run_tasks(attempt.remaining(order), "fault_pg_restart", WINDOW, tmp_path / "attempt-2.log")
    assert_like_clean(
        stack, clean, dataset, "PostgreSQL restarted mid-stage", started,
        f"restarted after {progress.tuples:,}/{EVENTS:,} rows copied",
    )


def test_postgres_crashes_mid_fact_load(warehouse, dataset, clean, order, tmp_path):
    """A re-run of the fact load has deleted and re-inserted the window's songplays when the
    server crashes: recovery must bring back exactly the rows of the first load."""
    stack, started = warehouse, time.monotonic()
    run_tasks(["all"], "fact_first", WINDOW, tmp_path / "first.log")
    assert warehouse_state(stack) == clean, "a second clean run differs from the first"

    # Keep writers out of stale_hours (readers may go on), so the re-run blocks after replacing
    # songplays, when it deletes the queue rows it took, before it commits.
    import psycopg

    blocker = psycopg.connect(stack.warehouse_conninfo)
    blocker.execute("LOCK TABLE stale_hours IN SHARE MODE")
    rerun_tasks = [task for task in order if task in {"load_songplays_fact", "load_dimensions", "quality_checks"}]
    attempt = TaskProcess(rerun_tasks, "fact_rerun", WINDOW, tmp_path / "attempt-1.log")
    waiting = wait_for(lambda: rows(stack, (
        "SELECT pid, backend_xid::text FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND query LIKE %s AND backend_xid IS NOT NULL"
    ), ("%DELETE FROM stale_hours%",)), "the fact load to block on stale_hours", process=attempt)
    pid = waiting[0][0]
    held = {mode for mode, in rows(stack, (
        "SELECT mode FROM pg_locks WHERE pid = %s AND granted AND relation = 'songplays'::regclass"
    ), (pid,))}
    # It has run LOCK, DELETE and INSERT on songplays in a transaction that wrote (has an xid).
    assert {"ShareRowExclusiveLock", "RowExclusiveLock"} <= held, held

    pg_log_mark = log_size(stack.pg_log)
    crash_postgres(stack)
    assert attempt.wait() == 1
    assert attempt.failed == ["load_songplays_fact"]
    assert "OperationalError" in attempt.output(), attempt.tail()
    blocker.close()
    stack.start_postgres()
    forget_metadata_connections()
    assert "automatic recovery in progress" in log_since(stack.pg_log, pg_log_mark), \
        "PostgreSQL did not go through crash recovery"
    assert warehouse_state(stack) == clean, "the crashed re-run left songplays changed"

    run_tasks(attempt.remaining(order), "fact_rerun", WINDOW, tmp_path / "attempt-2.log")
    assert_like_clean(
        stack, clean, dataset, "PostgreSQL crashed mid-fact-load", started,
        f"crashed with the window's {len(clean['songplays']):,} songplays deleted and re-inserted, uncommitted",
    )


def test_task_process_killed_mid_stage(warehouse, dataset, clean, order, tmp_path):
    stack, started = warehouse, time.monotonic()
    attempt = TaskProcess(["all"], "fault_sigkill", WINDOW, tmp_path / "attempt-1.log")
    progress = wait_for_copy(stack, "staging_events", FAULT_AT, attempt)
    attempt.signal(signal.SIGKILL)
    assert attempt.wait() == -signal.SIGKILL
    assert "stage_events" not in attempt.done
    # The server notices its client is gone and aborts the COPY's transaction.
    wait_for(lambda: backend_gone(stack, progress.pid), "the killed task's backend to end")
    assert_nothing_staged(stack)
    assert rows(stack, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0] == 0

    run_tasks(attempt.remaining(order), "fault_sigkill", WINDOW, tmp_path / "attempt-2.log")
    assert_like_clean(
        stack, clean, dataset, "task process SIGKILLed mid-stage", started,
        f"killed after {progress.tuples:,}/{EVENTS:,} rows copied",
    )
