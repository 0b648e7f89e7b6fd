"""Test-side helpers for the fault-injection tests: task processes, waiting, warehouse state."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psycopg

HARNESS = Path(__file__).resolve().with_name("fault_harness.py")
REPO = HARNESS.parents[2]
POLL_SECONDS = 0.05


class TaskProcess:
    """DAG tasks executed by ``fault_harness.py`` in a child process (one task attempt each)."""

    live: list[TaskProcess] = []

    def __init__(self, tasks: list[str], run_id: str, window: tuple[str, str], log_path: Path):
        self.tasks = list(tasks)
        self.run_id = run_id
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins"), *sys.path])}
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(HARNESS), "--run-id", run_id, "--start", window[0], "--end", window[1], *self.tasks],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self.started_at = time.monotonic()
        TaskProcess.live.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def _marked(self, marker: str) -> list[str]:
        return [line.split()[1] for line in self.output().splitlines() if line.startswith(marker + " ")]

    @property
    def done(self) -> list[str]:
        return self._marked("TASK_DONE")

    @property
    def failed(self) -> list[str]:
        return self._marked("TASK_FAILED")

    def remaining(self, order: list[str]) -> list[str]:
        """What a retry runs: the tasks of this attempt that did not finish, in DAG order."""
        planned = set(order) if self.tasks == ["all"] else set(self.tasks)
        done = set(self.done)
        return [task for task in order if task in planned and task not in done]

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"task process {self.pid} still running after {timeout}s:\n{self.tail()}") from None

    def signal(self, sig: int) -> None:
        if self.running():
            self.proc.send_signal(sig)

    def stop(self) -> None:
        """Kill this process (by its pid) if it still runs; for cleanup after a failed test."""
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    @classmethod
    def stop_all(cls) -> None:
        while cls.live:
            cls.live.pop().stop()


def run_tasks(tasks: list[str], run_id: str, window: tuple[str, str], log_path: Path, timeout: float = 180) -> TaskProcess:
    """Run tasks to completion; they must all succeed."""
    run = TaskProcess(tasks, run_id, window, log_path)
    code = run.wait(timeout)
    assert code == 0, f"{tasks} failed (exit {code}):\n{run.tail()}"
    return run


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60, process: TaskProcess | None = None) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` or if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and not process.running():
            raise AssertionError(f"task process exited ({process.proc.returncode}) while waiting for {what}:\n{process.tail()}")
        if time.monotonic() > deadline:
            detail = f":\n{process.tail()}" if process is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(POLL_SECONDS)


# --------------------------------------------------------------------------- the warehouse


def connect(stack) -> psycopg.Connection:
    return psycopg.connect(stack.warehouse_conninfo, autocommit=True)


def rows(stack, sql: str, params: Any = None) -> list[tuple]:
    with connect(stack) as conn:
        return conn.execute(sql, params).fetchall()


@dataclass
class CopyProgress:
    pid: int
    tuples: int
    bytes: int


def copy_progress(stack, table: str) -> CopyProgress | None:
    """The COPY into ``table`` running right now (pg_stat_progress_copy), if any."""
    found = rows(
        stack,
        "SELECT pid, tuples_processed, bytes_processed FROM pg_stat_progress_copy "
        "WHERE relid::regclass::text = %s AND command = 'COPY FROM'",
        (table,),
    )
    return CopyProgress(*found[0]) if found else None


def backend_gone(stack, pid: int) -> bool:
    return not rows(stack, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))


def wait_for_copy(stack, table: str, at_least: int, process: TaskProcess) -> CopyProgress:
    """Wait until the task's COPY into ``table`` has sent ``at_least`` rows (and is still running)."""
    return wait_for(
        lambda: (p := copy_progress(stack, table)) and p.tuples >= at_least and p,
        f"COPY into {table} to pass {at_least:,} rows", timeout=120, process=process,
    )


STAR_TABLES = {"songplays": "songplay_id", "users": "user_id", "songs": "song_id", "artists": "artist_id", "time": "start_time"}
STAGING_TABLES = ("staging_events", "staging_songs")


def warehouse_state(stack) -> dict[str, list[tuple]]:
    """Everything a run leaves behind that must not depend on faults and retries.

    The star schema in full; per staged object its row count, distinct lines and line range;
    the ledger and rejects without the run id and timestamps (which name the attempt);
    the hours recorded as loaded.
    """
    state = {table: rows(stack, f"SELECT * FROM {table} ORDER BY {key}") for table, key in STAR_TABLES.items()}
    for table in STAGING_TABLES:
        state[table] = rows(
            stack,
            f"SELECT source_key, count(*), count(DISTINCT source_line), min(source_line), max(source_line) "
            f"FROM {table} GROUP BY source_key ORDER BY source_key",
        )
    state["stage_load_ledger"] = rows(
        stack,
        "SELECT table_name, source_key, etag, size_bytes, lines_read, rows_staged, rows_rejected "
        "FROM stage_load_ledger ORDER BY table_name, source_key",
    )
    state["stage_rejects"] = rows(
        stack,
        "SELECT table_name, source_key, source_line, field, reason FROM stage_rejects ORDER BY 1, 2, 3, 4",
    )
    state["loaded_hours"] = rows(stack, "SELECT hour_start FROM loaded_hours ORDER BY hour_start")
    return state


def staging_integrity(stack, table: str, expected_lines: dict[str, int]) -> dict[str, int]:
    """Rows lost and duplicated in a staging table, against the non-blank lines of each file."""
    staged = {key: (count, distinct) for key, count, distinct in rows(
        stack, f"SELECT source_key, count(*), count(DISTINCT source_line) FROM {table} GROUP BY source_key"
    )}
    duplicated = sum(count - distinct for count, distinct in staged.values())
    lost = sum(lines - staged.get(key, (0, 0))[1] for key, lines in expected_lines.items())
    unexpected = sum(count for key, (count, _) in staged.items() if key not in expected_lines)
    return {"rows": sum(count for count, _ in staged.values()), "expected": sum(expected_lines.values()),
            "lost": lost, "duplicated": duplicated, "unexpected": unexpected}


def object_rows(stack, table: str, key: str) -> dict[str, int]:
    """What is visible for one object: staged rows, ledger entries and rejects."""
    return {
        "staged": rows(stack, f"SELECT count(*) FROM {table} WHERE source_key = %s", (key,))[0][0],
        "ledger": rows(stack, "SELECT count(*) FROM stage_load_ledger WHERE table_name = %s AND source_key = %s",
                       (table, key))[0][0],
        "rejects": rows(stack, "SELECT count(*) FROM stage_rejects WHERE table_name = %s AND source_key = %s",
                        (table, key))[0][0],
    }


# --------------------------------------------------------------------------- servers


def crash_postgres(stack) -> None:
    """Stop PostgreSQL the way a crash does: immediate shutdown, no checkpoint; recovery on restart."""
    pid = stack.pid("postgres")
    assert pid is not None, "postgres is not running"
    os.kill(pid, signal.SIGQUIT)  # what `pg_ctl stop -m immediate` sends
    wait_for(lambda: stack.pid("postgres") is None, "the postmaster to exit", timeout=30)


def forget_metadata_connections() -> None:
    """Drop the pooled connections of this process's Airflow metadata engine (dead after a restart)."""
    settings = sys.modules.get("airflow.settings")
    engine = getattr(settings, "engine", None)
    if engine is not None:
        engine.dispose()


def incomplete_read(output: str) -> tuple[int, int] | None:
    """(bytes read, bytes expected) from botocore's IncompleteReadError in a task's output."""
    match = re.search(r"IncompleteReadError: (\d+) read, but total bytes expected is (\d+)", output)
    return (int(match[1]), int(match[2])) if match else None
