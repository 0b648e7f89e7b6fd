"""Local development stack for Sparkify Pipelines (the "embedded default").

Everything runs as plain processes bound to 127.0.0.1, with all state under one
directory (``<repo>/.state`` by default):

* PostgreSQL 15 cluster   ``<state>/postgres/data``   (databases ``sparkify`` and ``airflow``)
* S3 emulation (moto)     in memory, for development only
* Airflow 3 components    ``AIRFLOW_HOME=<state>/airflow`` (api-server, scheduler, dag-processor, triggerer)

The executor is LocalExecutor by default. With ``executor="CeleryExecutor"`` (``SPARKIFY_EXECUTOR``)
the stack also runs a Redis broker (``redis-server``, in memory, password-protected) and a separate
``airflow celery worker`` that executes the tasks; Celery's results go to the ``airflow`` database.

Processes are tracked by pid files in ``<state>/run`` and logs go to ``<state>/logs``.
Generated secrets (database passwords, API/JWT keys) live in ``<state>/secrets.env``.

The same class backs the Makefile CLI (``python -m scripts.stack ...``) and the pytest fixtures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

HOST = "127.0.0.1"
REGION = "us-east-1"
FAKE_AWS_CREDENTIAL = "sparkify-local"

APP_ROLE = "sparkify"
WAREHOUSE_DB = "sparkify"
METADATA_DB = "airflow"
SUPERUSER = "postgres"
PG_OS_USER = "postgres"  # initdb/postgres refuse to run as root
PG_FALLBACK_BIN = Path("/usr/lib/postgresql/15/bin")

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Substrings one of which the command line of each tracked process contains.
CMDLINE_TOKENS: dict[str, tuple[str, ...]] = {
    "s3": ("moto_server",),
    "api-server": ("api-server", "api_server"),
    "scheduler": ("scheduler",),
    "dag-processor": ("dag-processor", "dag_processor"),
    "triggerer": ("triggerer",),
    "redis": ("redis-server",),
    "celery-worker": ("celery",),
}
EXECUTORS = ("LocalExecutor", "CeleryExecutor")
# Extra processes of a CeleryExecutor stack: the broker and one worker (stopped after the rest).
CELERY_COMPONENTS = ("redis", "celery-worker")
CELERY_WORKER_CONCURRENCY = 4
# Environment marker set on every process we spawn: identifies "our" processes.
STATE_MARKER = "SPARKIFY_STACK_STATE"
BIND_ATTEMPTS = 3  # retries when another program grabs a port between our check and the bind

SECRET_KEYS = (
    "SPARKIFY_PG_PASSWORD",  # role "sparkify"
    "SPARKIFY_PG_SUPERUSER_PASSWORD",  # bootstrap superuser "postgres" (never exported by env())
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__FERNET_KEY",
    "SPARKIFY_REDIS_PASSWORD",  # Celery broker (CeleryExecutor stacks only)
)

log = logging.getLogger("sparkify.stack")


class StackError(RuntimeError):
    """A stack operation failed; the message says what to look at."""


class ProcessDiedError(StackError):
    """A process we started exited while we waited for it to come up."""

    def __init__(self, name: str, message: str, bind_failed: bool = False):
        self.name = name
        self.bind_failed = bind_failed
        super().__init__(message)


class PortInUseError(StackError):
    def __init__(self, port: int, env_var: str):
        self.port = port
        self.env_var = env_var
        super().__init__(
            f"port {port} ({env_var}) is already in use on {HOST}; "
            f"stop whatever holds it or set {env_var} to a free port"
        )


# --------------------------------------------------------------------------- process helpers


def _reap(pid: int) -> None:
    """Collect a zombie if ``pid`` is our own child (pytest fixtures spawn in-process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return data[data.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    _reap(pid)
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22: starttime


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_tree(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (we start every process in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        try:
            is_leader = os.getpgid(pid) == pid
        except ProcessLookupError:
            is_leader = _group_alive(pid)
        if is_leader:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something listens on (or exclusively binds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _tcp_states(port: int) -> list[str]:
    """States (hex, as in /proc/net/tcp) of every IPv4/IPv6 TCP socket whose local port is ``port``."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                states.append(fields[3])
    return states


# /proc/net/tcp states of sockets that own a port for good: LISTEN, and CLOSE (bound, not listening).
TCP_OWNING_STATES = {"0A", "07"}
ADDR_IN_USE_MARKERS = ("address already in use", "could not bind", "errno 98")


def ensure_port_free(port: int, env_var: str, wait_connections: float = 90.0) -> None:
    """Raise PortInUseError unless ``127.0.0.1:port`` can be bound.

    The default ports lie in Linux's ephemeral range (32768-60999), so an *outgoing* connection of
    any program may use one as its local port, and keep it in TIME_WAIT for 60 s after closing;
    that blocks binding but goes away by itself. When only such connections hold the port we wait
    (up to ``wait_connections`` seconds); a listening or bound socket fails at once.
    """
    deadline = time.monotonic() + wait_connections
    announced = False
    while port_in_use(port):
        states = _tcp_states(port)
        transient = bool(states) and not TCP_OWNING_STATES.intersection(states)
        if transient and time.monotonic() < deadline:
            if not announced:
                log.info(
                    "port %d (%s) is only held by %d client connection(s) (e.g. TIME_WAIT); waiting for them to end",
                    port, env_var, len(states),
                )
                announced = True
            time.sleep(0.5)
            continue
        raise PortInUseError(port, env_var)


def _log_since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET without any proxy from the environment; HTTP errors still count as an answer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def normalize_executor(name: str) -> str:
    """``LocalExecutor``/``CeleryExecutor`` from that name or ``local``/``celery`` (any case)."""
    key = name.strip().lower().removesuffix("executor")
    for executor in EXECUTORS:
        if executor.lower().removesuffix("executor") == key:
            return executor
    raise StackError(f"executor {name!r} is not supported; use one of {', '.join(EXECUTORS)}")


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise StackError(f"{name}={port} is out of range")
    return port


# --------------------------------------------------------------------------- the stack


class LocalStack:
    """PostgreSQL + S3 emulation + Airflow on 127.0.0.1, state in ``state_dir``."""

    pg_start_timeout = 60
    s3_start_timeout = 60
    airflow_start_timeout = 240
    redis_start_timeout = 30
    stop_timeout = 30

    def __init__(
        self,
        state_dir: Path,
        *,
        pg_port: int = 15432,
        s3_port: int = 19000,
        api_port: int = 18080,
        bucket: str = "sparkify-local",
        repo_root: Path = REPO_ROOT,
        executor: str = "LocalExecutor",
        redis_port: int = 16379,
        worker_concurrency: int = CELERY_WORKER_CONCURRENCY,
    ):
        self.state_dir = Path(state_dir).absolute()
        self.pg_port = int(pg_port)
        self.s3_port = int(s3_port)
        self.api_port = int(api_port)
        self.bucket = bucket
        self.repo_root = Path(repo_root).absolute()
        self.executor = normalize_executor(executor)
        self.redis_port = int(redis_port)  # used by CeleryExecutor stacks only
        self.worker_concurrency = int(worker_concurrency)

        self.run_dir = self.state_dir / "run"
        self.logs_dir = self.state_dir / "logs"
        self.secrets_file = self.state_dir / "secrets.env"
        self.pg_dir = self.state_dir / "postgres"
        self.pg_data = self.pg_dir / "data"
        self.pg_socket_dir = self.pg_dir / "run"
        self.pg_log = self.logs_dir / "postgres.log"
        self.airflow_home = self.state_dir / "airflow"
        self.redis_dir = self.state_dir / "redis"

        self._secrets: dict[str, str] | None = None
        self._children: dict[str, subprocess.Popen] = {}
        self._log_marks: dict[str, int] = {}  # log size when a process was spawned
        self._lock_depth = 0
        self._lock_fd: int | None = None

    @classmethod
    def from_environment(cls) -> LocalStack:
        state = os.environ.get("SPARKIFY_STATE_DIR") or str(REPO_ROOT / ".state")
        return cls(
            Path(state),
            pg_port=_env_port("SPARKIFY_PG_PORT", 15432),
            s3_port=_env_port("SPARKIFY_S3_PORT", 19000),
            api_port=_env_port("SPARKIFY_API_PORT", 18080),
            bucket=os.environ.get("SPARKIFY_BUCKET") or "sparkify-local",
            executor=os.environ.get("SPARKIFY_EXECUTOR") or "LocalExecutor",
            redis_port=_env_port("SPARKIFY_REDIS_PORT", 16379),
        )

    def __repr__(self) -> str:
        celery = f", redis_port={self.redis_port}" if self.celery else ""
        return (
            f"LocalStack(state_dir={str(self.state_dir)!r}, pg_port={self.pg_port}, "
            f"s3_port={self.s3_port}, api_port={self.api_port}, bucket={self.bucket!r}, "
            f"executor={self.executor!r}{celery})"
        )

    @property
    def celery(self) -> bool:
        """True when tasks run on a Celery worker (with a Redis broker) instead of LocalExecutor."""
        return self.executor == "CeleryExecutor"

    @property
    def components(self) -> tuple[str, ...]:
        """The Airflow-side processes of this stack (Celery's broker and worker included)."""
        return AIRFLOW_COMPONENTS + (CELERY_COMPONENTS if self.celery else ())

    # ------------------------------------------------------------------ addresses and env

    @property
    def bin_dir(self) -> Path:
        """The venv whose tools (airflow, moto_server) we run."""
        here = Path(sys.executable).parent
        if (here / "airflow").exists():
            return here
        return self.repo_root / ".venv" / "bin"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def broker_url(self) -> str:
        return f"redis://:{self.secrets['SPARKIFY_REDIS_PASSWORD']}@{HOST}:{self.redis_port}/0"

    def _conninfo(self, dbname: str, user: str = APP_ROLE, password: str | None = None) -> str:
        from psycopg.conninfo import make_conninfo

        if password is None:
            password = self.secrets["SPARKIFY_PG_PASSWORD"]
        return make_conninfo(
            host=HOST, port=self.pg_port, dbname=dbname, user=user, password=password, connect_timeout=10
        )

    @property
    def warehouse_conninfo(self) -> str:
        return self._conninfo(WAREHOUSE_DB)

    @property
    def airflow_conninfo(self) -> str:
        return self._conninfo(METADATA_DB)

    def _superuser_conninfo(self, dbname: str = "postgres") -> str:
        return self._conninfo(dbname, SUPERUSER, self.secrets["SPARKIFY_PG_SUPERUSER_PASSWORD"])

    @property
    def secrets(self) -> dict[str, str]:
        """Secrets generated once per state dir, shared by every component (``secrets.env``, 0600)."""
        if self._secrets is None:
            self._secrets = self._load_or_create_secrets()
        return self._secrets

    def _load_or_create_secrets(self) -> dict[str, str]:
        existing = self._read_secrets()
        if existing is None or any(key not in existing for key in SECRET_KEYS):
            values = dict(existing or {})
            for key in SECRET_KEYS:
                if key not in values:
                    if key == "AIRFLOW__CORE__FERNET_KEY":
                        values[key] = base64.urlsafe_b64encode(os.urandom(32)).decode()
                    else:  # 64 bytes of entropy: PyJWT wants >= 64-byte HMAC keys
                        values[key] = os.urandom(64).hex()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.secrets_file.with_name(f".secrets.env.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write("# Generated by scripts/stack.py for the local stack. Do not commit.\n")
                fh.writelines(f"{key}={values[key]}\n" for key in sorted(values))
            if existing is None:
                try:  # create-once: if another process won the race, use its file
                    os.link(tmp, self.secrets_file)
                except FileExistsError:
                    tmp.unlink()
                    return self._read_secrets() or values
                tmp.unlink()
            else:
                os.replace(tmp, self.secrets_file)
            return values
        with contextlib.suppress(OSError):
            os.chmod(self.secrets_file, 0o600)
        return existing

    def _read_secrets(self) -> dict[str, str] | None:
        try:
            text = self.secrets_file.read_text()
        except FileNotFoundError:
            return None
        values = {}
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
        return values

    def env(self) -> dict[str, str]:
        """Every environment variable Airflow and the project scripts need for this stack."""
        s = self.secrets
        password = s["SPARKIFY_PG_PASSWORD"]
        api = self.api_url
        no_proxy = ",".join(
            dict.fromkeys(
                [p for p in os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")).split(",") if p]
                + [HOST, "localhost"]
            )
        )
        pythonpath = os.pathsep.join([str(self.repo_root), str(self.repo_root / "plugins")])
        metadata_url = f"postgresql+psycopg://{APP_ROLE}:{password}@{HOST}:{self.pg_port}/{METADATA_DB}"
        env = {
            # Airflow core
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.repo_root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.repo_root / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__FERNET_KEY": s["AIRFLOW__CORE__FERNET_KEY"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            # API server
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": s["AIRFLOW__API__SECRET_KEY"],
            "AIRFLOW__API_AUTH__JWT_SECRET": s["AIRFLOW__API_AUTH__JWT_SECRET"],
            # New/changed DAG files show up within ~10 s.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            # Connections and variables used by the DAGs
            "AIRFLOW_CONN_SPARKIFY_AWS": json.dumps(
                {
                    "conn_type": "aws",
                    "login": FAKE_AWS_CREDENTIAL,
                    "password": FAKE_AWS_CREDENTIAL,
                    "extra": {"endpoint_url": self.s3_endpoint, "region_name": REGION},
                }
            ),
            "AIRFLOW_CONN_SPARKIFY_WAREHOUSE": json.dumps(
                {
                    "conn_type": "postgres",
                    "host": HOST,
                    "port": self.pg_port,
                    "login": APP_ROLE,
                    "password": password,
                    "schema": WAREHOUSE_DB,
                }
            ),
            "AIRFLOW_VAR_SPARKIFY_BUCKET": self.bucket,
            "AIRFLOW_VAR_SPARKIFY_REGION": REGION,
            # AWS SDK defaults for scripts (boto3 picks these up)
            "AWS_ACCESS_KEY_ID": FAKE_AWS_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": FAKE_AWS_CREDENTIAL,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint,
            # Project scripts and LocalStack.from_environment()
            "SPARKIFY_STATE_DIR": str(self.state_dir),
            "SPARKIFY_PG_PORT": str(self.pg_port),
            "SPARKIFY_S3_PORT": str(self.s3_port),
            "SPARKIFY_API_PORT": str(self.api_port),
            "SPARKIFY_EXECUTOR": self.executor,
            "SPARKIFY_BUCKET": self.bucket,
            "SPARKIFY_S3_ENDPOINT": self.s3_endpoint,
            "SPARKIFY_API_URL": api,
            "SPARKIFY_WAREHOUSE_CONNINFO": self.warehouse_conninfo,
            "PYTHONPATH": pythonpath,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }
        if self.celery:
            env.update({
                # Broker: our redis-server; results (task states the scheduler polls): the metadata DB.
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                # Celery's own default (24 h) stated explicitly: silences a start-up warning per process.
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
                "SPARKIFY_REDIS_PORT": str(self.redis_port),
            })  # fmt: skip
        return env

    def child_env(self) -> dict[str, str]:
        """Environment for processes we spawn: inherited env without stray Airflow settings + env()."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        base.update(self.env())
        base[STATE_MARKER] = str(self.state_dir)
        base["PYTHONUNBUFFERED"] = "1"
        return base

    # ------------------------------------------------------------------ locking / files

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise mutating operations across processes (two `make up` at once)."""
        if self._lock_depth == 0:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state_dir / ".stack.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None

    def _ensure_dirs(self) -> None:
        for path in (self.state_dir, self.run_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        # The postgres user must be able to traverse the state dir.
        mode = self.state_dir.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(self.state_dir, mode | stat.S_IXOTH | stat.S_IROTH)

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _meta_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.meta.json"

    def _read_pid(self, name: str) -> int | None:
        try:
            return int(self._pid_file(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _write_pid(self, name: str, pid: int, cmd: list[str] | None = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._pid_file(name).write_text(f"{pid}\n")
        meta = {"pid": pid, "starttime": _start_time(pid), "cmd": cmd, "started_at": time.time()}
        self._meta_file(name).write_text(json.dumps(meta) + "\n")

    def _clear_pid(self, name: str) -> None:
        for path in (self._pid_file(name), self._meta_file(name)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _owned_pid(self, name: str) -> int | None:
        """The pid from ``<run>/<name>.pid`` if it is alive and provably one of ours."""
        pid = self._read_pid(name)
        if pid is None or not pid_alive(pid):
            return None
        try:
            meta = json.loads(self._meta_file(name).read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("pid") == pid and meta.get("starttime") and meta["starttime"] == _start_time(pid):
            return pid  # same pid *and* same start time: the very process we spawned
        tokens = CMDLINE_TOKENS.get(name, (name,))
        if _environ(pid).get(STATE_MARKER) == str(self.state_dir) and any(t in _cmdline(pid) for t in tokens):
            return pid
        return None

    def _orphaned_group(self, name: str, pid: int) -> bool:
        """True if ``pid`` is a leader we spawned (per our meta file) that died, leaving its group.

        A process group id stays reserved while any member lives, so a live group whose id is our
        dead leader's pid can only consist of that leader's descendants (e.g. executor workers).
        """
        try:
            meta = json.loads(self._meta_file(name).read_text())
        except (OSError, ValueError):
            return False
        return meta.get("pid") == pid and not pid_alive(pid) and _group_alive(pid)

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log_path = self.logs_dir / f"{name}.log"
        self._log_marks[name] = _size(log_path)
        with open(log_path, "ab") as log_fh:
            log_fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(cmd)}\n".encode())
            log_fh.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=self.repo_root,
                env=self.child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self._children[name] = proc
        self._write_pid(name, proc.pid, cmd)
        log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
        return proc

    def _stop_processes(self, names: Iterable[str]) -> None:
        """SIGTERM the process groups of our live processes, SIGKILL after ``stop_timeout``."""
        targets: dict[str, int] = {}
        for name in names:
            pid = self._owned_pid(name)
            if pid is None:
                stale = self._read_pid(name)
                if stale is not None and self._orphaned_group(name, stale):
                    log.info("%s: main process %d is gone but its process group is not; stopping the leftovers",
                             name, stale)
                    targets[name] = stale
                elif stale is not None:
                    log.info("%s: pid file names pid %d, which is not ours (any more); removing the pid file",
                             name, stale)
                else:
                    log.info("%s is not running", name)
                self._clear_pid(name)
            else:
                targets[name] = pid
        if not targets:
            return
        for name, pid in targets.items():
            # SIGTERM to the main process only: Airflow shuts its own children down in order
            # (signalling the whole group at once makes e.g. the triggerer wait 10 s on its runner).
            log.info("stopping %s (pid %d)", name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

        started = time.monotonic()
        pending = dict(targets)

        def remaining() -> dict[str, int]:
            for n, p in list(pending.items()):
                if not (pid_alive(p) or _group_alive(p)):
                    del pending[n]
                    log.debug("%s stopped after %.1fs", n, time.monotonic() - started)
            return dict(pending)

        deadline = started + self.stop_timeout
        while remaining() and time.monotonic() < deadline:
            for n, p in pending.items():
                if not pid_alive(p):  # main process gone, stragglers left in its group
                    _signal_tree(p, signal.SIGTERM)
            time.sleep(0.1)
        left = remaining()
        for name, pid in left.items():
            log.warning("%s (pid %d) did not stop within %ss; sending SIGKILL", name, pid, self.stop_timeout)
            _signal_tree(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while remaining() and time.monotonic() < deadline:
            time.sleep(0.1)
        for name, pid in targets.items():
            proc = self._children.pop(name, None)
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.wait(timeout=1)
            self._clear_pid(name)
        if remaining():
            raise StackError(f"could not stop: {', '.join(remaining())}")

    def _wait_http(self, url: str, timeout: float, watch: Iterable[str]) -> bytes:
        """Wait until ``url`` answers; fail early (with the log tail) if a watched process dies."""

        def answer() -> bytes | None:
            try:
                status, body = _http_get(url)
                if status < 500:
                    return body
            except (OSError, urllib.error.URLError):
                pass
            return None

        return self._wait_until(answer, f"{url} did not answer", timeout, watch)

    def _wait_until(self, probe, what: str, timeout: float, watch: Iterable[str]):
        """Poll ``probe()`` until it returns something other than None, and return that.

        Fails early (with the log tail) if a watched process dies, and after ``timeout`` seconds
        with ``what`` and the log of the first watched process.
        """
        watch = list(watch)
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result is not None:
                return result
            for name in watch:
                if self._owned_pid(name) is None:
                    log_path = self.logs_dir / f"{name}.log"
                    output = _log_since(log_path, self._log_marks.get(name, 0)).lower()
                    self._clear_pid(name)
                    raise ProcessDiedError(
                        name,
                        f"{name} exited during startup; see {log_path}\n{_tail(log_path)}",
                        bind_failed=any(marker in output for marker in ADDR_IN_USE_MARKERS),
                    )
            if time.monotonic() > deadline:
                log_path = self.logs_dir / f"{watch[0]}.log" if watch else self.logs_dir
                raise StackError(f"{what} within {timeout:.0f}s; see {log_path}\n{_tail(log_path)}")
            time.sleep(0.25)

    # ------------------------------------------------------------------ PostgreSQL

    @staticmethod
    def _pg_bin(name: str) -> str:
        found = shutil.which(name)
        if found:
            return found
        candidate = PG_FALLBACK_BIN / name
        if candidate.exists():
            return str(candidate)
        raise StackError(f"PostgreSQL binary {name!r} not found; install postgresql-15 or put its bin dir on PATH")

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _pg_cmd(self, *cmd: str) -> list[str]:
        if self._as_root():
            return ["runuser", "-u", PG_OS_USER, "--", *cmd]
        return list(cmd)

    def _pg_ids(self) -> tuple[int, int] | None:
        if not self._as_root():
            return None
        import pwd

        try:
            entry = pwd.getpwnam(PG_OS_USER)
        except KeyError:
            raise StackError(
                f"running as root but there is no {PG_OS_USER!r} user to run PostgreSQL as"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _check_traversable(self, path: Path, uid: int, gid: int) -> None:
        for parent in [path, *path.parents]:
            try:
                st = parent.stat()
            except FileNotFoundError:
                continue
            if st.st_uid == uid:
                ok = st.st_mode & stat.S_IXUSR
            elif st.st_gid == gid:
                ok = st.st_mode & stat.S_IXGRP
            else:
                ok = st.st_mode & stat.S_IXOTH
            if not ok:
                raise StackError(
                    f"the {PG_OS_USER!r} user cannot reach {path}: {parent} is not traversable "
                    f"(mode {stat.filemode(st.st_mode)}); use a state dir whose parents are world-executable "
                    f"(e.g. chmod o+x {parent})"
                )

    def _postmaster_pid(self) -> int | None:
        """PID of a live postmaster serving *our* data dir (from pg's own postmaster.pid)."""
        try:
            pid = int((self.pg_data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and str(self.pg_data) in _cmdline(pid):
            return pid
        return None

    def postgres_running(self) -> bool:
        return self._postmaster_pid() is not None

    def _prepare_pg_dirs(self) -> None:
        self._ensure_dirs()
        ids = self._pg_ids()
        self.pg_dir.mkdir(mode=0o755, exist_ok=True)
        self.pg_socket_dir.mkdir(mode=0o755, exist_ok=True)
        self.pg_log.touch(exist_ok=True)
        if ids:
            uid, gid = ids
            for path in (self.pg_dir, self.pg_socket_dir, self.pg_log):
                os.chown(path, uid, gid)
            if self.pg_data.exists() and self.pg_data.stat().st_uid != uid:
                for root, dirs, files in os.walk(self.pg_data):
                    os.chown(root, uid, gid)
                    for entry in dirs + files:
                        os.lchown(os.path.join(root, entry), uid, gid)
            self._check_traversable(self.pg_dir, uid, gid)

    def _initdb(self) -> None:
        log.info("initialising PostgreSQL cluster in %s", self.pg_data)
        pwfile = self.pg_dir / ".initdb-pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.secrets["SPARKIFY_PG_SUPERUSER_PASSWORD"] + "\n")
        ids = self._pg_ids()
        if ids:
            os.chown(pwfile, *ids)
        try:
            cmd = self._pg_cmd(
                self._pg_bin("initdb"),
                "-D", str(self.pg_data),
                "-U", SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
            if result.returncode != 0:
                raise StackError(f"initdb failed:\n{result.stdout}{result.stderr}")
        finally:
            pwfile.unlink(missing_ok=True)

    def _write_pg_conf(self) -> None:
        conf = self.pg_data / "sparkify.conf"
        conf.write_text(
            "# Written by scripts/stack.py on every start; edit the stack, not this file.\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.pg_port}\n"
            f"unix_socket_directories = '{self.pg_socket_dir}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "max_connections = 200\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
        )
        main_conf = self.pg_data / "postgresql.conf"
        include = "include_if_exists = 'sparkify.conf'"
        if include not in main_conf.read_text():
            with open(main_conf, "a") as fh:
                fh.write(f"\n{include}\n")
        ids = self._pg_ids()
        if ids:
            os.chown(conf, *ids)
        os.chmod(conf, 0o600)

    def start_postgres(self) -> None:
        with self._locked():
            pid = self._postmaster_pid()
            if pid is not None:
                log.info("postgres already running (pid %d) on %s:%d", pid, HOST, self.pg_port)
                self._write_pid("postgres", pid)
                self._ensure_databases()
                return
            ensure_port_free(self.pg_port, "SPARKIFY_PG_PORT")
            self._prepare_pg_dirs()
            if not (self.pg_data / "PG_VERSION").exists():
                self._initdb()
            self._write_pg_conf()
            # pg's lock file names no live postmaster for this data dir: it is stale.
            (self.pg_data / "postmaster.pid").unlink(missing_ok=True)
            cmd = self._pg_cmd(
                self._pg_bin("pg_ctl"), "start", "-w", "-t", str(self.pg_start_timeout),
                "-D", str(self.pg_data), "-l", str(self.pg_log),
            )  # fmt: skip
            for attempt in range(1, BIND_ATTEMPTS + 1):
                if attempt > 1:
                    ensure_port_free(self.pg_port, "SPARKIFY_PG_PORT")
                mark = _size(self.pg_log)
                result = subprocess.run(cmd, capture_output=True, text=True, cwd="/", stdin=subprocess.DEVNULL)
                pid = self._postmaster_pid()
                if result.returncode == 0 and pid is not None:
                    break
                output = _log_since(self.pg_log, mark).lower()
                if attempt < BIND_ATTEMPTS and any(m in output for m in ADDR_IN_USE_MARKERS):
                    log.info("postgres: port %d was taken just before it bound it; retrying", self.pg_port)
                    continue
                raise StackError(
                    f"PostgreSQL did not start; see {self.pg_log}\n{result.stdout}{result.stderr}{_tail(self.pg_log)}"
                )
            self._write_pid("postgres", pid)
            log.info("postgres started (pid %d) on %s:%d, log %s", pid, HOST, self.pg_port, self.pg_log)
            self._ensure_databases()

    def _ensure_databases(self) -> None:
        import psycopg
        from psycopg import sql

        try:
            conn = psycopg.connect(self._superuser_conninfo(), autocommit=True)
        except psycopg.OperationalError as exc:
            raise StackError(
                f"cannot connect to PostgreSQL on {HOST}:{self.pg_port} as {SUPERUSER!r}: {exc}\n"
                f"If {self.secrets_file} was lost or replaced, the existing cluster in {self.pg_data} "
                "no longer matches it: stop the stack and remove that directory to start afresh."
            ) from exc
        password = self.secrets["SPARKIFY_PG_PASSWORD"]
        with conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(password)
                )
            )
            if not exists:
                log.info("created role %s", APP_ROLE)
            for db in (WAREHOUSE_DB, METADATA_DB):
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(APP_ROLE))
                    )
                    log.info("created database %s", db)

    def stop_postgres(self) -> None:
        with self._locked():
            pid = self._postmaster_pid()
            if pid is None:
                log.info("postgres is not running")
                self._clear_pid("postgres")
                return
            log.info("stopping postgres (pid %d)", pid)
            cmd = self._pg_cmd(
                self._pg_bin("pg_ctl"), "stop", "-m", "fast", "-w", "-t", str(self.stop_timeout), "-D", str(self.pg_data)
            )
            result = subprocess.run(cmd, capture_output=True, text=True, cwd="/", stdin=subprocess.DEVNULL)
            if result.returncode != 0 and pid_alive(pid):
                raise StackError(f"pg_ctl stop failed; see {self.pg_log}\n{result.stdout}{result.stderr}")
            self._clear_pid("postgres")

    def _pg_connect(self, conninfo: str):
        import psycopg

        return psycopg.connect(conninfo, autocommit=True)

    # ------------------------------------------------------------------ S3 (moto)

    def s3_running(self) -> bool:
        return self._owned_pid("s3") is not None

    def _s3_client(self):
        import boto3
        from botocore.config import Config

        # A session of its own: boto3's default session is not thread-safe (stacks may start in parallel).
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=FAKE_AWS_CREDENTIAL,
            aws_secret_access_key=FAKE_AWS_CREDENTIAL,
            region_name=REGION,
            config=Config(proxies={}, retries={"max_attempts": 3}),
        )

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        client = self._s3_client()
        try:
            client.head_bucket(Bucket=self.bucket)
        except ClientError:
            client.create_bucket(Bucket=self.bucket)
            log.info("created bucket s3://%s (in memory: it is empty after every S3 restart)", self.bucket)

    def start_s3(self) -> None:
        with self._locked():
            pid = self._owned_pid("s3")
            if pid is not None:
                log.info("s3 already running (pid %d) at %s", pid, self.s3_endpoint)
            else:
                self._ensure_dirs()
                moto = self.bin_dir / "moto_server"
                if not moto.exists():
                    raise StackError(f"{moto} not found; run `make install` first")
                for attempt in range(1, BIND_ATTEMPTS + 1):
                    ensure_port_free(self.s3_port, "SPARKIFY_S3_PORT")
                    self._spawn("s3", [str(moto), "-H", HOST, "-p", str(self.s3_port)])
                    try:
                        self._wait_http(f"{self.s3_endpoint}/moto-api/", self.s3_start_timeout, ["s3"])
                        break
                    except ProcessDiedError as exc:
                        if not exc.bind_failed or attempt == BIND_ATTEMPTS:
                            raise
                        log.info("s3: port %d was taken just before the server bound it; retrying", self.s3_port)
            self._ensure_bucket()

    def stop_s3(self) -> None:
        with self._locked():
            self._stop_processes(["s3"])

    def _empty_bucket(self) -> int:
        from botocore.exceptions import ClientError

        client = self._s3_client()
        deleted = 0
        try:
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchBucket", "404"):
                raise
        self._ensure_bucket()
        return deleted

    # ------------------------------------------------------------------ Airflow

    def _airflow(self) -> str:
        path = self.bin_dir / "airflow"
        if not path.exists():
            raise StackError(f"{path} not found; run `make install` first")
        return str(path)

    def _component_cmd(self, name: str) -> list[str]:
        if name == "api-server":
            return [self._airflow(), "api-server", "--host", HOST, "--port", str(self.api_port)]
        if name in ("scheduler", "triggerer"):
            # Their log servers would bind 0.0.0.0:8793/8794 (hard-coded host). Everything runs on
            # this machine and shares AIRFLOW_HOME/logs, so the api-server reads task logs from disk.
            return [self._airflow(), name, "--skip-serve-logs"]
        if name == "celery-worker":
            # Likewise no log server (0.0.0.0:8793): the worker then listens on no port at all.
            # No mingle/gossip: there is one worker, nothing to synchronise with at start-up.
            return [
                self._airflow(), "celery", "worker", "--skip-serve-logs",
                "--concurrency", str(self.worker_concurrency), "--without-mingle", "--without-gossip",
            ]  # fmt: skip
        return [self._airflow(), name]

    def airflow_status(self) -> dict[str, bool]:
        return {name: self._owned_pid(name) is not None for name in self.components}

    def _running_executor(self) -> str | None:
        """The executor the running scheduler of this state dir was started with, if it runs."""
        pid = self._owned_pid("scheduler")
        return _environ(pid).get("AIRFLOW__CORE__EXECUTOR") if pid else None

    # ------------------------------------------------------------------ Celery: Redis broker + worker

    @staticmethod
    def _redis_server() -> str:
        found = shutil.which("redis-server")
        if not found:
            raise StackError(
                "redis-server not found; the CeleryExecutor stack needs it (Debian: apt-get install redis-server)"
            )
        return found

    def redis_running(self) -> bool:
        return self._owned_pid("redis") is not None

    def _redis_ping(self) -> bool | None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host=HOST, port=self.redis_port, password=self.secrets["SPARKIFY_REDIS_PASSWORD"],
            socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0),  # we poll ourselves
        )  # fmt: skip
        try:
            return True if client.ping() else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    def _write_redis_conf(self) -> Path:
        """The password goes into a 0600 file, not onto the command line (which every user can read)."""
        self.redis_dir.mkdir(mode=0o700, exist_ok=True)
        conf = self.redis_dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# Written by scripts/stack.py on every start; edit the stack, not this file.\n")
            fh.write(f"requirepass {self.secrets['SPARKIFY_REDIS_PASSWORD']}\n")
        os.chmod(conf, 0o600)
        return conf

    def start_redis(self) -> None:
        """The Celery broker: ``redis-server`` on 127.0.0.1, in memory only (no RDB/AOF files)."""
        with self._locked():
            pid = self._owned_pid("redis")
            if pid is not None:
                log.info("redis already running (pid %d) on %s:%d", pid, HOST, self.redis_port)
                return
            server = self._redis_server()
            self._ensure_dirs()
            conf = self._write_redis_conf()
            cmd = [
                server, str(conf), "--bind", HOST, "--port", str(self.redis_port), "--protected-mode", "yes",
                "--save", "", "--appendonly", "no", "--dir", str(self.redis_dir), "--daemonize", "no",
                "--logfile", "",
            ]  # fmt: skip
            for attempt in range(1, BIND_ATTEMPTS + 1):
                ensure_port_free(self.redis_port, "SPARKIFY_REDIS_PORT")
                self._spawn("redis", cmd)
                try:
                    self._wait_until(self._redis_ping, f"redis on {HOST}:{self.redis_port} did not answer",
                                     self.redis_start_timeout, ["redis"])  # fmt: skip
                    break
                except ProcessDiedError as exc:
                    if not exc.bind_failed or attempt == BIND_ATTEMPTS:
                        raise
                    log.info("redis: port %d was taken just before it bound it; retrying", self.redis_port)
            log.info("redis started on %s:%d (Celery broker)", HOST, self.redis_port)

    def _worker_ready(self) -> bool | None:
        """Celery logs ``celery@<host> ready.`` once the worker consumes from the broker."""
        output = _log_since(self.logs_dir / "celery-worker.log", self._log_marks.get("celery-worker", 0))
        return True if " ready." in output else None

    def _tracked(self, names: Iterable[str]) -> list[str]:
        """``names`` without the Celery processes a LocalExecutor stack never started (no pid file)."""
        return [n for n in names if self.celery or n not in CELERY_COMPONENTS or self._pid_file(n).exists()]

    @property
    def _migrate_stamp(self) -> Path:
        return self.airflow_home / ".sparkify-migrated.json"

    def _alembic_revision(self) -> str | None:
        import psycopg

        with self._pg_connect(self.airflow_conninfo) as conn:
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except psycopg.errors.UndefinedTable:
                return None
        return row[0] if row else None

    @staticmethod
    def _airflow_version() -> str | None:
        from importlib import metadata

        try:
            return metadata.version("apache-airflow-core")
        except metadata.PackageNotFoundError:
            return None

    def migrate_airflow(self, force: bool = False) -> None:
        """``airflow db migrate`` unless the metadata DB is already at the revision we migrated to."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        revision = self._alembic_revision()
        current = {"airflow_version": self._airflow_version(), "revision": revision}
        if not force and revision and current["airflow_version"]:
            try:
                if json.loads(self._migrate_stamp.read_text()) == current:
                    log.info("airflow metadata DB is up to date (revision %s)", revision)
                    return
            except (OSError, ValueError):
                pass
        log_path = self.logs_dir / "airflow-migrate.log"
        log.info("running airflow db migrate (log %s)", log_path)
        started = time.monotonic()
        with open(log_path, "ab") as fh:
            fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} airflow db migrate\n".encode())
            fh.flush()
            result = subprocess.run(
                [self._airflow(), "db", "migrate"],
                cwd=self.repo_root,
                env=self.child_env(),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        if result.returncode != 0:
            raise StackError(f"airflow db migrate failed; see {log_path}\n{_tail(log_path)}")
        current["revision"] = self._alembic_revision()
        self._migrate_stamp.write_text(json.dumps(current) + "\n")
        log.info("airflow db migrate done in %.1fs", time.monotonic() - started)

    def start_airflow(self) -> None:
        with self._locked():
            current = self._running_executor()
            if current and current != self.executor:
                raise StackError(
                    f"the stack in {self.state_dir} runs with {current}; "
                    f"stop it first (make down) to start it with {self.executor}"
                )
            self.start_postgres()
            running = self.airflow_status()
            if all(running.values()):
                log.info("airflow already running at %s", self.api_url)
                return
            if not running["api-server"]:
                ensure_port_free(self.api_port, "SPARKIFY_API_PORT")
            if self.celery and not running["redis"]:
                self._redis_server()  # fail before starting anything when it is missing
                ensure_port_free(self.redis_port, "SPARKIFY_REDIS_PORT")
            self._ensure_dirs()
            self.migrate_airflow()
            if self.celery:
                self.start_redis()
            for name in self.components:
                if name != "redis" and not running[name]:
                    self._spawn(name, self._component_cmd(name))
            started = time.monotonic()
            for attempt in range(1, BIND_ATTEMPTS + 1):
                try:
                    self._wait_http(f"{self.api_url}/api/v2/version", self.airflow_start_timeout, self.components)
                    if self.celery and not running["celery-worker"]:
                        self._wait_until(self._worker_ready, "the Celery worker did not report ready",
                                         self.airflow_start_timeout, ["celery-worker", *AIRFLOW_COMPONENTS])
                    break
                except ProcessDiedError as exc:
                    if exc.name != "api-server" or not exc.bind_failed or attempt == BIND_ATTEMPTS:
                        self.stop_airflow()  # do not leave a half-started set behind
                        raise
                    log.info("api-server: port %d was taken just before it bound it; retrying", self.api_port)
                    ensure_port_free(self.api_port, "SPARKIFY_API_PORT")
                    self._spawn("api-server", self._component_cmd("api-server"))
            log.info("airflow api-server answers at %s (after %.1fs, %s)",
                     self.api_url, time.monotonic() - started, self.executor)

    def stop_airflow(self) -> None:
        """Stop the Airflow processes, and Celery's worker and broker if this state dir started them."""
        with self._locked():
            # The broker goes last: the scheduler and the worker still talk to it while shutting down.
            self._stop_processes(self._tracked((*AIRFLOW_COMPONENTS, "celery-worker")))
            self._stop_processes(self._tracked(["redis"]))

    # ------------------------------------------------------------------ whole stack

    def status(self) -> dict[str, bool]:
        airflow = self.airflow_status()
        return {"postgres": self.postgres_running(), "s3": self.s3_running(), **airflow, "airflow": all(airflow.values())}

    def up(self) -> None:
        with self._locked():
            before = self.status()
            started = time.monotonic()
            self.start_postgres()
            self.start_s3()
            self.start_airflow()
            if all(before.values()):
                log.info("stack was already up; nothing to do")
            else:
                log.info("stack is up in %.1fs: Airflow UI %s, S3 %s, warehouse %s:%d/%s, %s",
                         time.monotonic() - started, self.api_url, self.s3_endpoint, HOST, self.pg_port, WAREHOUSE_DB,
                         self.executor)

    def down(self) -> None:
        with self._locked():
            self.stop_airflow()
            self.stop_s3()
            self.stop_postgres()

    def reset(self) -> None:
        """Empty the warehouse and the bucket and wipe Airflow's metadata (run history, pause state, ...).

        Leaves running what was running (Airflow is restarted on a fresh metadata DB) and keeps the
        installed environment, the PostgreSQL cluster and the generated secrets.
        """
        from psycopg import sql

        with self._locked():
            pg_was_running = self.postgres_running()
            airflow_was_running = any(self.airflow_status().values())
            self.start_postgres()
            if airflow_was_running:
                self.stop_airflow()
            with self._pg_connect(self._superuser_conninfo()) as conn:
                for db in (WAREHOUSE_DB, METADATA_DB):
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(APP_ROLE))
                    )
                    log.info("recreated empty database %s", db)
            self._migrate_stamp.unlink(missing_ok=True)
            shutil.rmtree(self.airflow_home / "logs", ignore_errors=True)
            if self.s3_running():
                count = self._empty_bucket()
                log.info("emptied s3://%s (%d objects deleted)", self.bucket, count)
            else:
                log.info("s3 is not running (it keeps nothing while stopped)")
            if airflow_was_running:
                self.start_airflow()  # migrates the fresh metadata DB first
            if not pg_was_running:
                self.stop_postgres()

    # ------------------------------------------------------------------ SQL helper

    def query(self, query: str, dbname: str = WAREHOUSE_DB) -> list[str]:
        """Run ``query`` (may hold several statements) and format the last result like ``psql -At``."""
        import psycopg
        from psycopg import pq

        try:
            conn = self._pg_connect(self._conninfo(dbname))
        except psycopg.OperationalError as exc:
            raise StackError(f"cannot connect to database {dbname!r} on {HOST}:{self.pg_port} (is the stack up?): {exc}") from exc
        with conn:
            res = conn.pgconn.exec_(query.encode(conn.info.encoding))
            encoding = conn.info.encoding
            if res.status == pq.ExecStatus.TUPLES_OK:
                out = []
                for row in range(res.ntuples):
                    values = (res.get_value(row, col) for col in range(res.nfields))
                    out.append("|".join("" if v is None else v.decode(encoding) for v in values))
                return out
            if res.status == pq.ExecStatus.COMMAND_OK:
                tag = (res.command_status or b"").decode(encoding)
                return [tag] if tag else []
            if res.status == pq.ExecStatus.EMPTY_QUERY:
                return []
            message = (res.error_message or b"").decode(encoding, errors="replace").strip()
            raise StackError(message or f"query failed ({res.status.name})")


# --------------------------------------------------------------------------- CLI


def _print_status(stack: LocalStack, as_json: bool) -> None:
    status = stack.status()
    if as_json:
        print(json.dumps(status, indent=2))
        return
    where = {
        "postgres": f"{HOST}:{stack.pg_port} (databases {WAREHOUSE_DB}, {METADATA_DB})",
        "s3": f"{stack.s3_endpoint} (bucket {stack.bucket}, in memory)",
        "api-server": stack.api_url,
        "scheduler": stack.executor,
        "redis": f"{HOST}:{stack.redis_port} (Celery broker, in memory)",
        "celery-worker": f"concurrency {stack.worker_concurrency}",
    }
    for name in ("postgres", "s3", *stack.components):
        pid = stack._postmaster_pid() if name == "postgres" else stack._owned_pid(name)
        state = f"running (pid {pid})" if pid else "stopped"
        print(f"{name:<14} {state:<22} {where.get(name, '')}".rstrip())
    print(f"state dir      {stack.state_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start postgres, s3 and airflow (no-op when up)")
    sub.add_parser("down", help="stop everything this stack started (no-op when down)")
    p_status = sub.add_parser("status", help="show what is running")
    p_status.add_argument("--json", action="store_true")
    sub.add_parser("env", help="print `export K=V` lines for eval")
    sub.add_parser("reset", help="empty warehouse and bucket, wipe airflow metadata")
    p_sql = sub.add_parser("sql", help="run SQL on the warehouse, print rows like psql -At")
    p_sql.add_argument("query")
    p_sql.add_argument("--db", default=WAREHOUSE_DB, choices=[WAREHOUSE_DB, METADATA_DB])
    for part in ("postgres", "s3", "airflow"):
        sub.add_parser(f"start-{part}", help=f"start {part} only")
        sub.add_parser(f"stop-{part}", help=f"stop {part} only")
    sub.add_parser("migrate", help="airflow db migrate (when needed)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="stack: %(message)s", stream=sys.stderr)
    try:
        stack = LocalStack.from_environment()
        cmd = args.command
        if cmd == "env":
            for key, value in sorted(stack.env().items()):
                print(f"export {key}={shlex.quote(value)}")
        elif cmd == "status":
            _print_status(stack, args.json)
        elif cmd == "sql":
            for line in stack.query(args.query, args.db):
                print(line)
        elif cmd == "migrate":
            stack.start_postgres()
            stack.migrate_airflow()
        else:
            getattr(stack, cmd.replace("-", "_"))()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
