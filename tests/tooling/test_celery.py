"""CeleryExecutor, for real: the same hourly runs through a LocalExecutor stack and through a
CeleryExecutor stack (Redis broker + a separate ``airflow celery worker``) give the same warehouse.

Both stacks are complete ``scripts.stack.LocalStack`` instances (PostgreSQL, moto S3, api-server,
scheduler, dag-processor, triggerer) in temporary state dirs on free ports. Each gets the same
generated data, and the scheduler runs the same hours as an Airflow backfill created through the
REST API, exactly as ``scripts/pipeline.py`` does. Then:

* every row of every star table (``songplay_id`` included) is equal in the two warehouses;
* stack (b)'s task instances were executed by its Celery worker: each carries a Celery task id
  that the result backend recorded as SUCCESS, and the worker's log reports each of them finished;
* stack (a) never touched Celery;
* the worker listens on no port, and Redis only on 127.0.0.1;
* on the LocalExecutor stack, ``python -m scripts.pipeline run`` (``make run``: one manual run
  for the whole window) on an emptied warehouse gives the backfill's star schema, row for row.

The comparison is marked ``slow`` (runs by default; ``-m "not slow"`` deselects it); a few quick
tests cover the broker on its own and the environment. Tests that need ``redis-server`` are
skipped only when it is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from celery.states import READY_STATES as READY
from psycopg import sql

from scripts.pipeline import ANALYTICS_DAG_ID, AirflowAPI, PipelineError, parse_hour, wait_for
from scripts.sample_data import generate
from scripts.stack import REPO_ROOT, LocalStack, PortInUseError, StackError
from scripts.upload_data import upload_dir
from support.pipeline import star_snapshot
from support.ports import free_ports
from support.processes import listening_addresses

needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (Debian: apt-get install redis-server; .ci/run does)",
)

DAG_ID = "sparkify_etl"
# Four hourly runs. The first hour goes alone: it creates the tables, which concurrent first runs
# on an empty warehouse would race for (one wins, the others retry a minute later).
BACKFILLS = (("2018-11-01T00:00:00Z", "2018-11-01T01:00:00Z"), ("2018-11-01T01:00:00Z", "2018-11-01T04:00:00Z"))
WINDOW = (BACKFILLS[0][0], BACKFILLS[-1][1])  # the hours the backfills cover, for the one manual run


# A stack whose scheduler creates no runs by itself: unpausing the DAG would otherwise add a
# scheduled run for the latest hour (and asset-triggered ``sparkify_analytics`` runs after it),
# extra work outside the compared window.
ONLY_THE_BACKFILL = {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}


@dataclass
class ManualRun:
    dropped: list[str]  # the warehouse tables dropped before the run
    returncode: int
    output: str
    snapshot: dict[str, list[tuple]]


@dataclass
class Outcome:
    executor: str
    snapshot: dict[str, list[tuple]]
    task_instances: list[dict]  # id, run_id, task_id, state, external_executor_id (from the metadata DB)
    celery_results: dict[str, str] = field(default_factory=dict)  # celery task id -> status
    worker_log: str = ""
    listening: dict[str, list[str]] = field(default_factory=dict)  # process -> "host:port" it listens on
    status: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    manual_run: ManualRun | None = None


def make_state_dir(tag: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"sparkify-celery-{tag}-", dir="/tmp"))


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = make_state_dir("scratch")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- quick: settings and the broker


def test_environment_per_executor(state_dir: Path) -> None:
    local = LocalStack(state_dir).env()
    assert local["AIRFLOW__CORE__EXECUTOR"] == local["SPARKIFY_EXECUTOR"] == "LocalExecutor"
    assert not any(key.startswith("AIRFLOW__CELERY") for key in local)

    stack = LocalStack(state_dir, pg_port=25432, redis_port=26379, executor="celery")
    env = stack.env()
    password = stack.secrets["SPARKIFY_REDIS_PASSWORD"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == env["SPARKIFY_EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{password}@127.0.0.1:26379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg://sparkify:")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@127.0.0.1:25432/airflow")
    assert 2 <= int(env["AIRFLOW__CELERY__WORKER_CONCURRENCY"]) <= 4
    # Same warehouse and bucket as a LocalExecutor stack on the same ports.
    same = LocalStack(state_dir, pg_port=25432).env()
    for key in ("AIRFLOW_CONN_SPARKIFY_WAREHOUSE", "AIRFLOW_CONN_SPARKIFY_AWS", "AIRFLOW_VAR_SPARKIFY_BUCKET"):
        assert env[key] == same[key]

    with pytest.raises(StackError, match="executor 'KubernetesExecutor' is not supported"):
        LocalStack(state_dir, executor="KubernetesExecutor")


@needs_redis
def test_redis_listens_on_localhost_only_wants_the_password_and_stops(state_dir: Path) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    (port,) = free_ports(1)
    stack = LocalStack(state_dir, executor="CeleryExecutor", redis_port=port)
    try:
        stack.start_redis()
        pid = stack.pid("redis")
        assert pid is not None and stack.airflow_status()["redis"]
        assert listening_addresses(pid) == [f"127.0.0.1:{port}"]
        password = stack.secrets["SPARKIFY_REDIS_PASSWORD"]
        assert password not in Path(f"/proc/{pid}/cmdline").read_text()
        assert (state_dir / "redis" / "redis.conf").stat().st_mode & 0o777 == 0o600
        no_retries = Retry(NoBackoff(), 0)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, retry=no_retries).ping()
        assert redis.Redis(host="127.0.0.1", port=port, password=password, retry=no_retries).ping()
        stack.start_redis()  # already running: no-op
        assert stack.pid("redis") == pid
    finally:
        stack.down()
    assert not stack.airflow_status()["redis"]
    assert not (state_dir / "run" / "redis.pid").exists()
    assert not list((state_dir / "redis").glob("*.rdb")) and not list((state_dir / "redis").glob("*.aof"))


@needs_redis
def test_taken_redis_port_gives_a_clear_error(state_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        stack = LocalStack(state_dir, executor="CeleryExecutor", redis_port=port)
        with pytest.raises(PortInUseError) as info:
            stack.start_redis()
    assert str(info.value) == (
        f"port {port} (SPARKIFY_REDIS_PORT) is already in use on 127.0.0.1; "
        "stop whatever holds it or set SPARKIFY_REDIS_PORT to a free port"
    )
    assert not (state_dir / "run" / "redis.pid").exists()


def test_switching_executors_needs_a_down_first(state_dir: Path) -> None:
    celery = LocalStack(state_dir, executor="CeleryExecutor")
    # Stands in for a running CeleryExecutor scheduler of this state dir (same env and pid files).
    celery.supervisor.spawn("scheduler", [sys.executable, "-c", "import time; time.sleep(120)", "scheduler"])
    local = LocalStack(state_dir)
    try:
        refused = r"runs with CeleryExecutor; stop it first \(make down\) to start it with LocalExecutor"
        with pytest.raises(StackError, match=refused):
            local.start_airflow()
        assert not local.postgres_running()  # refused before starting anything
    finally:
        local.down()  # stops what the state dir runs, whichever executor
    assert not celery.airflow_status()["scheduler"]


# --------------------------------------------------------------------------- slow: LocalExecutor vs CeleryExecutor


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("celery-data")
    generate(data_dir, seed=29, songs=40, days=1, events_per_day=1500, users=15)
    return data_dir


def make_run_on_an_empty_warehouse(stack: LocalStack, api: AirflowAPI) -> ManualRun:
    """Drop every warehouse table (star, staging, ledger, loaded hours, rejects), then run the CLI
    behind ``make run`` for WINDOW, and snapshot the star schema it leaves."""
    # This stack's scheduler never creates the asset-triggered sparkify_analytics runs: paused, with
    # its queued Asset events gone, the CLI's summary has no report run to wait for.
    api._call("PATCH", f"/api/v2/dags/{ANALYTICS_DAG_ID}", json={"is_paused": True})
    with contextlib.suppress(PipelineError):  # 404: no queued events
        api._call("DELETE", f"/api/v2/dags/{ANALYTICS_DAG_ID}/assets/queuedEvents")
    with psycopg.connect(stack.warehouse_conninfo, autocommit=True) as db:
        tables = [row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        db.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "SPARKIFY_"))}
    result = subprocess.run(
        [sys.executable, "-m", "scripts.pipeline", "run", "--start", WINDOW[0], "--end", WINDOW[1]],
        cwd=REPO_ROOT, env={**env, **stack.env()}, capture_output=True, text=True, timeout=300,
    )
    return ManualRun(sorted(tables), result.returncode, result.stdout + result.stderr, star_snapshot(stack))


def run_pipeline(executor: str, data_dir: Path, ports: list[int], manual_run: bool = False) -> Outcome:
    """Start a stack with ``executor``, load ``data_dir``, backfill BACKFILLS, collect what to compare;
    with ``manual_run``, then also rebuild the warehouse with one ``make run`` over the same hours."""
    state = make_state_dir(executor.removesuffix("Executor").lower())
    pg_port, s3_port, api_port, redis_port = ports
    stack = LocalStack(state, pg_port=pg_port, s3_port=s3_port, api_port=api_port, redis_port=redis_port,
                       bucket="sparkify-celery-test", executor=executor, extra_env=ONLY_THE_BACKFILL)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    try:
        stack.up()
        seconds["up"] = time.monotonic() - started
        upload_dir(data_dir, stack.bucket, stack.service("s3").client())

        # The REST calls of `python -m scripts.pipeline backfill`.
        api = AirflowAPI(stack.api_url)
        api.login()
        api.wait_for_dag()
        api.unpause()
        mark = time.monotonic()
        for start, end in BACKFILLS:
            backfill_id = api.backfill(parse_hour(start), parse_hour(end), run_backwards=False)
            runs = wait_for(
                api,
                lambda start=start, end=end: api.runs(run_type="backfill", logical_date_gte=start, logical_date_lt=end),
                done=lambda backfill_id=backfill_id: api.backfill_done(backfill_id),
                timeout=240,
            )
            assert [run["state"] for run in runs] == ["success"] * len(runs), runs
        seconds["backfill"] = time.monotonic() - mark
        assert len(api.runs(run_type="backfill")) == 4

        with psycopg.connect(stack.airflow_conninfo) as db:
            rows = db.execute(
                "SELECT id::text, run_id, task_id, state, external_executor_id FROM task_instance "
                "WHERE dag_id = %s ORDER BY run_id, task_id", (DAG_ID,),
            ).fetchall()
            task_instances = [dict(zip(("id", "run_id", "task_id", "state", "external_executor_id"), row)) for row in rows]
            celery_results = {}
            if db.execute("SELECT to_regclass('celery_taskmeta')").fetchone()[0] is not None:
                # Airflow marks a task instance done through its execution API a moment before the
                # worker stores the Celery result, so wait for the results of the last tasks to land.
                deadline = time.monotonic() + 60
                while True:
                    celery_results = dict(db.execute("SELECT task_id, status FROM celery_taskmeta").fetchall())
                    pending = [ti for ti in task_instances if celery_results.get(ti["external_executor_id"]) not in READY]
                    if not pending or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)

        status = stack.status()
        listening = {}
        for name in ("celery-worker", "redis"):
            pid = stack.pid(name)
            if pid is not None:
                listening[name] = listening_addresses(pid)
        snapshot = star_snapshot(stack)
        manual = None
        if manual_run:
            mark = time.monotonic()
            manual = make_run_on_an_empty_warehouse(stack, api)
            seconds["manual run"] = time.monotonic() - mark
        api.session.close()  # an open keep-alive connection delays the api-server's shutdown
        return Outcome(
            executor=executor,
            snapshot=snapshot,
            task_instances=task_instances,
            celery_results=celery_results,
            worker_log=(stack.logs_dir / "celery-worker.log").read_text(errors="replace") if stack.celery else "",
            listening=listening,
            status=status,
            seconds=seconds,
            manual_run=manual,
        )
    finally:
        mark = time.monotonic()
        stack.down()
        seconds["down"] = time.monotonic() - mark
        seconds["total"] = time.monotonic() - started
        print(f"{executor}: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()))
        shutil.rmtree(state, ignore_errors=True)


def slow(test):
    """The comparison: runs by default (deselect with -m "not slow"); about 3-4 minutes."""
    for mark in (pytest.mark.slow, needs_redis, pytest.mark.timeout(480)):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def outcomes(dataset: Path) -> Iterator[dict[str, Outcome]]:
    """Both stacks at once: most of a stack's time is waiting (scheduler loop, task start-up)."""
    executors = ("LocalExecutor", "CeleryExecutor")
    ports = free_ports(4 * len(executors))  # distinct across the stacks
    with ThreadPoolExecutor(max_workers=len(executors)) as pool:
        futures = {
            e: pool.submit(run_pipeline, e, dataset, ports[4 * i : 4 * i + 4], manual_run=e == "LocalExecutor")
            for i, e in enumerate(executors)
        }
        yield {executor: future.result() for executor, future in futures.items()}


@slow
def test_both_executors_build_the_same_warehouse(outcomes: dict[str, Outcome]) -> None:
    local, celery = outcomes["LocalExecutor"].snapshot, outcomes["CeleryExecutor"].snapshot
    assert set(local) == {"songplays", "users", "songs", "artists", "time"}
    assert all(local[table] for table in local), {table: len(rows) for table, rows in local.items()}
    for table in local:
        assert celery[table] == local[table], f"{table} differs between LocalExecutor and CeleryExecutor"
    # Same task instances, all successful, in both stacks.
    keys = {e: sorted((ti["run_id"], ti["task_id"]) for ti in o.task_instances) for e, o in outcomes.items()}
    assert keys["LocalExecutor"] == keys["CeleryExecutor"]
    # Four hourly runs of the five tasks (stage_events, stage_songs, the fact, the dimensions, the checks).
    assert len(keys["LocalExecutor"]) == 4 * 5
    for outcome in outcomes.values():
        assert {ti["state"] for ti in outcome.task_instances} == {"success"}


@slow
def test_the_celery_worker_ran_every_task(outcomes: dict[str, Outcome]) -> None:
    celery = outcomes["CeleryExecutor"]
    assert celery.status["redis"] and celery.status["celery-worker"], celery.status

    # The scheduler handed each task instance to Celery, and the result backend saw it succeed.
    for ti in celery.task_instances:
        assert ti["external_executor_id"], f"{ti['run_id']} {ti['task_id']} has no Celery task id"
        assert celery.celery_results.get(ti["external_executor_id"]) == "SUCCESS", ti

    # The worker process itself ran them: its log reports each task instance's workload finished.
    finished = {
        workload_id: state
        for state, workload_id in re.findall(r"Workload finished.*?final_state=(\w+).*?workload_id=([0-9a-f-]+)",
                                             celery.worker_log)
    }
    for ti in celery.task_instances:
        assert finished.get(ti["id"]) == "success", f"the worker log has no finished workload for {ti}"
        assert f"task_id='{ti['task_id']}'" in celery.worker_log and f"run_id='{ti['run_id']}'" in celery.worker_log


@slow
def test_the_local_executor_stack_never_used_celery(outcomes: dict[str, Outcome]) -> None:
    local = outcomes["LocalExecutor"]
    assert "redis" not in local.status and "celery-worker" not in local.status
    assert local.celery_results == {}
    assert all(ti["external_executor_id"] is None for ti in local.task_instances)
    assert local.listening == {}


@slow
def test_celery_processes_listen_nowhere_public(outcomes: dict[str, Outcome]) -> None:
    celery = outcomes["CeleryExecutor"]
    assert celery.listening["celery-worker"] == []  # --skip-serve-logs: no log server on 0.0.0.0:8793
    assert celery.listening["redis"] and all(a.startswith("127.0.0.1:") for a in celery.listening["redis"])


@slow
def test_make_run_and_make_backfill_give_the_same_warehouse(outcomes: dict[str, Outcome]) -> None:
    """``make run`` and ``make backfill`` are interchangeable: one manual run over the backfilled
    hours, from an empty warehouse, gives the identical star schema (same rows, same songplay_ids)
    as the scheduler's hourly backfill runs."""
    local = outcomes["LocalExecutor"]
    manual = local.manual_run
    assert {*local.snapshot, "staging_events", "staging_songs", "stage_load_ledger", "loaded_hours"} <= set(
        manual.dropped
    ), manual.dropped
    assert manual.returncode == 0, manual.output
    assert f"for [{WINDOW[0]}, {WINDOW[1]})" in manual.output and "Runs: 1 succeeded, 0 failed" in manual.output, (
        manual.output
    )
    assert all(local.snapshot[table] for table in local.snapshot)
    for table, rows in local.snapshot.items():
        assert manual.snapshot[table] == rows, f"{table} differs between make run and make backfill"
