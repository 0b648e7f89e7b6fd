"""The benchmark's own local stack (temp state dir, free ports) and helpers around it.

Airflow reads its configuration on first import, so :func:`bench_stack` puts the stack's
environment into ``os.environ`` before anything imports Airflow. Measurements run in
fresh worker subprocesses (``python -m bench.worker``) that inherit that environment, with
per-job overrides for the warehouse database and the bucket.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.config import REPO, code_dir

log = logging.getLogger("bench")

RESULT_MARK = "BENCH_RESULT "


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_stack(bucket: str = "bench"):
    """A LocalStack in a fresh temp dir on free ports; its env goes into os.environ now."""
    for path in (str(REPO), str(REPO / "plugins")):
        if path not in sys.path:
            sys.path.insert(0, path)
    from scripts.stack import LocalStack

    state = Path(tempfile.mkdtemp(prefix="sparkify-bench-", dir="/tmp"))
    code = code_dir()
    if code != REPO:
        # Workers put these first on sys.path / use them as the DAGs folder; the stack's
        # Airflow components get them from repo_root (DAGS_FOLDER, PLUGINS_FOLDER, PYTHONPATH).
        os.environ.setdefault("BENCH_PLUGINS_DIR", str(code / "plugins"))
        os.environ.setdefault("BENCH_DAGS_DIR", str(code / "dags"))
    # Workers parse BENCH_DAGS_DIR; the stack's Airflow parses its own folder, which section 6
    # fills with sparkify_etl and the no-op DAGs it is compared with.
    os.environ.setdefault("BENCH_DAGS_DIR", str(code / "dags"))
    stack = LocalStack(state, pg_port=free_port(), s3_port=free_port(), api_port=free_port(), bucket=bucket,
                       repo_root=code, extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(state / "e2e_dags")})
    # Drop stray Airflow settings of the caller's shell (e.g. an eval'd `make env`) first.
    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        del os.environ[key]
    os.environ.update(stack.env())
    os.environ["SPARKIFY_START_DATE"] = "2018-11-01"
    return stack


def remove_state(stack) -> None:
    shutil.rmtree(stack.state_dir, ignore_errors=True)


# --------------------------------------------------------------------------- databases


def conninfo(stack, dbname: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(stack.warehouse_conninfo, dbname=dbname)


def connect(stack, dbname: str):
    import psycopg

    return psycopg.connect(conninfo(stack, dbname), autocommit=True)


def create_database(stack, dbname: str) -> None:
    """A fresh, empty database owned by the app role (dropped first if it exists)."""
    from psycopg import sql

    with connect(stack, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def render_create_sql() -> str:
    """Every table's include/sql/create/*.sql of the measured code, rendered for PostgreSQL
    (the tables reference no other, so any order creates them)."""
    import jinja2

    sql_dir = code_dir() / "include" / "sql"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(sql_dir)))
    tables = sorted(path.stem for path in (sql_dir / "create").glob("*.sql") if path.stem != "create_tables_lock")
    return "\n".join(env.get_template(f"create/{table}.sql").render(dialect="postgres") for table in tables)


def create_tables(stack, dbname: str) -> None:
    with connect(stack, dbname) as conn:
        conn.execute(render_create_sql())


def checkpoint(stack) -> None:
    """Flush dirty buffers between repetitions, so one run's writes don't land in the next."""
    try:
        import psycopg

        with psycopg.connect(stack.superuser_conninfo(), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except Exception as err:  # not essential: measurements stay valid, just noisier
        log.debug("CHECKPOINT skipped: %s", err)


def warehouse_env(stack, dbname: str) -> dict[str, str]:
    """Env overrides pointing the sparkify_warehouse connection at ``dbname``."""
    conn = json.loads(stack.env()["AIRFLOW_CONN_SPARKIFY_WAREHOUSE"])
    conn["schema"] = dbname
    return {"AIRFLOW_CONN_SPARKIFY_WAREHOUSE": json.dumps(conn), "SPARKIFY_WAREHOUSE_CONNINFO": conninfo(stack, dbname)}


def bucket_env(bucket: str) -> dict[str, str]:
    return {"AIRFLOW_VAR_SPARKIFY_BUCKET": bucket, "SPARKIFY_BUCKET": bucket}


def s3_endpoint_env(stack, endpoint: str) -> dict[str, str]:
    """Env overrides pointing the sparkify_aws connection (and the GET loop) at ``endpoint``."""
    conn = json.loads(stack.env()["AIRFLOW_CONN_SPARKIFY_AWS"])
    conn["extra"]["endpoint_url"] = endpoint
    return {"AIRFLOW_CONN_SPARKIFY_AWS": json.dumps(conn), "SPARKIFY_S3_ENDPOINT": endpoint}


@contextmanager
def latency_proxy(endpoint: str, delay_ms: float) -> Iterator[str]:
    """``bench.latency_proxy`` in front of ``endpoint``; yields the proxy's endpoint URL."""
    target = urlsplit(endpoint)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.latency_proxy", "--target", f"{target.hostname}:{target.port}",
         "--delay-ms", str(delay_ms)],
        cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"latency proxy did not start (exit {proc.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- S3


def s3_client(stack, workers: int = 16):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=stack.s3_endpoint, aws_access_key_id=stack.env()["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env()["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
        config=Config(max_pool_connections=max(10, workers), retries={"max_attempts": 5, "mode": "standard"},
                      s3={"addressing_style": "path"}, proxies={}),
    )


# --------------------------------------------------------------------------- CPU accounting

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds of a live process (plus its waited-for children's with ``children``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / _TICK


def _child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class ServerCPU:
    """CPU used by the stack's servers: moto (the S3 endpoint) and the whole PostgreSQL cluster.

    PostgreSQL backends are children of the postmaster: a finished backend's CPU shows up in the
    postmaster's cutime once reaped, a live one is read directly, so the sum covers both.
    """

    def __init__(self, stack):
        self.stack = stack

    def _pids(self) -> tuple[int | None, int | None]:
        return self.stack.pid("s3"), self.stack.pid("postgres")

    def snapshot(self) -> dict[str, float]:
        moto, postmaster = self._pids()
        pg = 0.0
        if postmaster:
            pg = _proc_cpu(postmaster, children=True) + sum(_proc_cpu(child) for child in _child_pids(postmaster))
        return {"moto": _proc_cpu(moto) if moto else 0.0, "postgres": pg}

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {f"{name}_cpu_s": round(after[name] - before[name], 3) for name in before}


# --------------------------------------------------------------------------- worker processes


class WorkerError(RuntimeError):
    pass


def run_worker(job: str, args: dict[str, Any], *, env: dict[str, str] | None = None, log_dir: Path,
               timeout: float = 3600, cpu: ServerCPU | None = None) -> dict[str, Any]:
    """Run ``python -m bench.worker job args`` in a fresh process and return its result dict.

    The worker's stderr (Airflow and operator logs) goes to ``log_dir/<job>-<n>.log``.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    number = len(list(log_dir.glob(f"{job}-*.log"))) + 1
    log_path = log_dir / f"{job}-{number:03d}.log"
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    before = cpu.snapshot() if cpu else None
    started = time.perf_counter()
    with open(log_path, "wb") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.worker", job, json.dumps(args)],
            cwd=REPO, env=child_env, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, timeout=timeout,
        )
    wall = time.perf_counter() - started
    if cpu:
        time.sleep(0.2)  # let the postmaster reap the worker's backends
        servers = ServerCPU.delta(before, cpu.snapshot())
    result = None
    for line in proc.stdout.decode(errors="replace").splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
    if proc.returncode != 0 or result is None:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise WorkerError(f"worker {job} failed (exit {proc.returncode}); log {log_path}\n{tail}")
    result["process_wall_s"] = wall
    if cpu:
        result.update(servers)
    result["log"] = str(log_path)
    return result
