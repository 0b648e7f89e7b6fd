"""``LocalStack``: the services of one stack, started and stopped in order, and the whole-stack verbs
(up, down, status, reset, query) the Makefile and the tests use."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

from . import secretsfile
from .airflow import AirflowTools, CeleryWorker, components
from .airflow_env import child_env, conninfo, stack_env
from .config import APP_ROLE, HOST, METADATA_DB, WAREHOUSE_DB, StackConfig
from .errors import StackError
from .postgres import Postgres, psql_at
from .processes import environ
from .redis import Redis
from .s3 import S3
from .service import Service
from .supervisor import Supervisor

log = logging.getLogger("sparkify.stack")

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# What an executor runs besides PostgreSQL, S3 and the Airflow components.
EXECUTOR_SERVICES = {"LocalExecutor": (), "CeleryExecutor": ("redis", "celery-worker")}
# Start order, one tier after the other; stop in reverse. The broker stops after the processes
# that still talk to it while shutting down.
TIERS = {"postgres": 0, "s3": 1, "redis": 2}
AIRFLOW_TIER = 3


class LocalStack:
    """PostgreSQL + S3 emulation + Airflow on 127.0.0.1, state in ``state_dir``.

    ``LocalStack(state_dir, pg_port=..., extra_env={...})`` or ``LocalStack(config=StackConfig(...))``.
    The configuration's fields and places read through: ``stack.pg_port``, ``stack.logs_dir``, ...
    """

    def __init__(self, state_dir: Path | None = None, *, config: StackConfig | None = None, **options):
        self.config = config if config is not None else StackConfig(state_dir, **options)
        self._secrets: dict[str, str] | None = None
        self.supervisor = Supervisor(self.config, self.child_env)
        tools = AirflowTools(self.config, self.bin_dir, self.child_env, self.connect)
        every: list[Service] = [
            Postgres(self.config, self.supervisor, lambda: self.secrets),
            S3(self.config, self.supervisor, self.bin_dir),
            Redis(self.config, self.supervisor, lambda: self.secrets),
            *components(self.config, self.supervisor, tools),
            CeleryWorker(self.config, self.supervisor, tools, lambda: self.secrets),
        ]
        self._every = {service.name: service for service in every}
        names = {"postgres", "s3", *AIRFLOW_COMPONENTS, *EXECUTOR_SERVICES[self.config.executor]}
        self.services = [service for service in every if service.name in names]
        self.airflow = tools

    @classmethod
    def from_environment(cls) -> LocalStack:
        return cls(config=StackConfig.from_environment())

    def __getattr__(self, name: str):
        if name.startswith("_") or name == "config":
            raise AttributeError(name)
        return getattr(self.config, name)

    def __repr__(self) -> str:
        return f"LocalStack({self.config!r})"

    # ------------------------------------------------------------------ services

    def _names(self) -> list[str]:
        return [service.name for service in self.services]

    def service(self, name: str) -> Service:
        return self._every[name]

    def pid(self, name: str) -> int | None:
        """The pid of our running ``name`` (``postgres``, ``s3``, ``scheduler``, ...), or None."""
        return self.service(name).pid()

    @property
    def components(self) -> tuple[str, ...]:
        """The Airflow-side processes of this stack (Celery's broker and worker included)."""
        return tuple(name for name in self._names() if name not in ("postgres", "s3"))

    def _tier(self, service: Service) -> int:
        return TIERS.get(service.name, AIRFLOW_TIER)

    def _start(self, lowest: int = 0, highest: int = AIRFLOW_TIER) -> None:
        for tier in range(lowest, highest + 1):
            self.supervisor.start([s for s in self.services if self._tier(s) == tier])

    def _stop(self, lowest: int = 0, highest: int = AIRFLOW_TIER) -> None:
        # Also what the other executor left running in this state dir (it has pid files).
        known = set(self._names())
        stoppable = [s for s in self._every.values()
                     if s.name in known or self.supervisor.pids.pid_file(s.name).exists()]
        for tier in range(highest, lowest - 1, -1):
            self.supervisor.stop([s for s in stoppable if self._tier(s) == tier])

    # ------------------------------------------------------------------ addresses and environment

    @property
    def bin_dir(self) -> Path:
        """The venv whose tools (airflow, moto_server) we run."""
        here = Path(sys.executable).parent
        return here if (here / "airflow").exists() else self.config.repo_root / ".venv" / "bin"

    @property
    def secrets(self) -> dict[str, str]:
        """Secrets generated once per state dir, shared by every component (``secrets.env``, 0600)."""
        if self._secrets is None:
            self._secrets = secretsfile.load_or_create(self.config.secrets_file)
        return self._secrets

    def env(self) -> dict[str, str]:
        """Every environment variable Airflow and the project scripts need for this stack."""
        env = stack_env(self.config, self.secrets)
        for service in self.services:
            env.update(service.environment())
        env.update(self.config.extra_env)
        return env

    def child_env(self) -> dict[str, str]:
        return child_env(self.env())

    def conninfo(self, dbname: str = WAREHOUSE_DB) -> str:
        return conninfo(self.config, dbname, APP_ROLE, self.secrets["SPARKIFY_PG_PASSWORD"])

    warehouse_conninfo = property(lambda self: self.conninfo(WAREHOUSE_DB))
    airflow_conninfo = property(lambda self: self.conninfo(METADATA_DB))

    def superuser_conninfo(self, dbname: str = "postgres") -> str:
        """The bootstrap superuser's: for what the app role may not do (CHECKPOINT, DROP DATABASE)."""
        return self.service("postgres").superuser_conninfo(dbname)

    def connect(self, dbname: str = WAREHOUSE_DB):
        import psycopg

        return psycopg.connect(self.conninfo(dbname), autocommit=True)

    pg_data = property(lambda self: self.service("postgres").places.data, doc="where the data dir is now")
    pg_log = property(lambda self: self.supervisor.log_path("postgres"))

    # ------------------------------------------------------------------ parts

    def start_postgres(self) -> None:
        self._start(0, 0)

    def stop_postgres(self) -> None:
        self._stop(0, 0)

    def postgres_running(self) -> bool:
        return self.service("postgres").running()

    def start_s3(self) -> None:
        self._start(1, 1)

    def stop_s3(self) -> None:
        self._stop(1, 1)

    def s3_running(self) -> bool:
        return self.service("s3").running()

    def start_redis(self) -> None:
        self.service("redis").start()

    def migrate_airflow(self, force: bool = False) -> None:
        self.airflow.migrate(force)

    def airflow_status(self) -> dict[str, bool]:
        return {name: self.service(name).running() for name in self.components}

    def start_airflow(self) -> None:
        """Airflow's processes (and a Celery stack's broker), on a running PostgreSQL."""
        with self.supervisor.locked():
            scheduler = self.pid("scheduler")
            current = environ(scheduler).get("AIRFLOW__CORE__EXECUTOR") if scheduler else None
            if current and current != self.config.executor:
                raise StackError(f"the stack in {self.config.state_dir} runs with {current}; "
                                 f"stop it first (make down) to start it with {self.config.executor}")
            self.start_postgres()
            if all(self.airflow_status().values()):
                log.info("airflow already running at %s", self.config.api_url)
                return
            started = time.monotonic()
            self._start(TIERS["redis"], AIRFLOW_TIER)
            log.info("airflow api-server answers at %s (after %.1fs, %s)",
                     self.config.api_url, time.monotonic() - started, self.config.executor)

    def stop_airflow(self) -> None:
        """Stop the Airflow processes, and Celery's worker and broker if this state dir started them."""
        self._stop(TIERS["redis"], AIRFLOW_TIER)

    # ------------------------------------------------------------------ whole stack

    def status(self) -> dict[str, bool]:
        airflow = self.airflow_status()
        return {"postgres": self.postgres_running(), "s3": self.s3_running(), **airflow, "airflow": all(airflow.values())}

    def up(self) -> None:
        with self.supervisor.locked():
            before = self.status()
            started = time.monotonic()
            self.start_postgres()
            self.start_s3()
            self.start_airflow()
            if all(before.values()):
                log.info("stack is already up; nothing to do")
            else:
                log.info("stack is up in %.1fs: Airflow UI %s, S3 %s, warehouse %s:%d/%s, %s",
                         time.monotonic() - started, self.config.api_url, self.config.s3_endpoint, HOST,
                         self.config.pg_port, WAREHOUSE_DB, self.config.executor)

    def down(self) -> None:
        self._stop()

    def reset(self) -> None:
        """Empty the warehouse and the bucket and wipe Airflow's metadata (run history, pause state, ...).

        Leaves running what was running (Airflow is restarted on a fresh metadata DB) and keeps the
        installed environment, the PostgreSQL cluster and the generated secrets.
        """
        with self.supervisor.locked():
            pg_was_running = self.postgres_running()
            airflow_was_running = any(self.airflow_status().values())
            self.start_postgres()
            if airflow_was_running:
                self.stop_airflow()
            self.service("postgres").recreate_databases()
            self.airflow.stamp.unlink(missing_ok=True)
            shutil.rmtree(self.config.airflow_home / "logs", ignore_errors=True)
            if self.s3_running():
                count = self.service("s3").empty_bucket()
                log.info("emptied s3://%s (%d objects deleted)", self.config.bucket, count)
            else:
                log.info("s3 is not running (it keeps nothing while stopped)")
            if airflow_was_running:
                self.start_airflow()  # migrates the fresh metadata DB first
            if not pg_was_running:
                self.stop_postgres()

    def query(self, query: str, dbname: str = WAREHOUSE_DB) -> list[str]:
        """Run ``query`` (may hold several statements) and format the last result like ``psql -At``."""
        import psycopg

        try:
            conn = self.connect(dbname)
        except psycopg.OperationalError as exc:
            raise StackError(f"cannot connect to database {dbname!r} on {HOST}:{self.config.pg_port} "
                             f"(is the stack up?): {exc}") from exc
        with conn:
            return psql_at(conn, query)
