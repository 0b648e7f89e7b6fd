"""Airflow's processes (api-server, scheduler, dag-processor, triggerer, Celery worker) and the
metadata database migration they need first."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from importlib import metadata
from pathlib import Path

from .airflow_env import metadata_url
from .config import HOST, StackConfig
from .errors import StackError
from .ports import http_answer
from .processes import tail
from .service import Service
from .supervisor import Supervisor

log = logging.getLogger("sparkify.stack")


class AirflowTools:
    """The ``airflow`` command of the venv, and ``airflow db migrate`` when the database needs it."""

    def __init__(self, config: StackConfig, bin_dir: Path, child_env, connect):
        self.config = config
        self.bin_dir = bin_dir
        self.child_env = child_env
        self.connect = connect  # dbname -> psycopg connection as the app role
        self._up_to_date: dict | None = None

    def command(self, *args: str) -> list[str]:
        path = self.bin_dir / "airflow"
        if not path.exists():
            raise StackError(f"{path} not found; run `make install` first")
        return [str(path), *args]

    @property
    def stamp(self) -> Path:
        return self.config.airflow_home / ".sparkify-migrated.json"

    def _revision(self) -> str | None:
        import psycopg

        with self.connect("airflow") as conn:
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except psycopg.errors.UndefinedTable:
                return None
        return row[0] if row else None

    def migrate(self, force: bool = False) -> None:
        """``airflow db migrate`` unless the metadata DB is already at the revision we migrated to."""
        self.config.airflow_home.mkdir(parents=True, exist_ok=True)
        try:
            version = metadata.version("apache-airflow-core")
        except metadata.PackageNotFoundError:
            version = None
        current = {"airflow_version": version, "revision": self._revision()}
        if not force and current["revision"] and version:
            try:
                if json.loads(self.stamp.read_text()) == current:
                    if self._up_to_date != current:  # said once, not once per component
                        log.info("airflow metadata DB is up to date (revision %s)", current["revision"])
                    self._up_to_date = current
                    return
            except (OSError, ValueError):
                pass
        log_path = self.config.logs_dir / "airflow-migrate.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("running airflow db migrate (log %s)", log_path)
        started = time.monotonic()
        with open(log_path, "ab") as fh:
            fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} airflow db migrate\n".encode())
            fh.flush()
            result = subprocess.run(self.command("db", "migrate"), cwd=self.config.repo_root, env=self.child_env(),
                                    stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise StackError(f"airflow db migrate failed; see {log_path}\n{tail(log_path)}")
        current["revision"] = self._revision()
        self.stamp.write_text(json.dumps(current) + "\n")
        log.info("airflow db migrate done in %.1fs", time.monotonic() - started)


class AirflowProcess(Service):
    """One Airflow component: ``airflow <args>``, started once the metadata DB is migrated."""

    start_timeout = 240

    def __init__(self, config: StackConfig, supervisor: Supervisor, tools: AirflowTools, name: str,
                 args: tuple[str, ...], tokens: tuple[str, ...]):
        super().__init__(config, supervisor)
        self.tools = tools
        self.name = name
        self.args = args
        self.tokens = tokens

    def prepare(self) -> None:
        self.tools.migrate()

    def command(self) -> list[str]:
        return self.tools.command(*self.args)


class ApiServer(AirflowProcess):
    port_var = "SPARKIFY_API_PORT"

    def __init__(self, config, supervisor, tools):
        super().__init__(config, supervisor, tools, "api-server",
                         ("api-server", "--host", HOST, "--port", str(config.api_port)), ("api-server", "api_server"))

    @property
    def port(self) -> int:
        return self.config.api_port

    @property
    def where(self) -> str:
        return f"at {self.config.api_url}"

    def ready(self) -> bytes | None:
        return http_answer(f"{self.config.api_url}/api/v2/version")


class CeleryWorker(AirflowProcess):
    """Likewise no log server (0.0.0.0:8793): the worker then listens on no port at all.
    No mingle/gossip: there is one worker, nothing to synchronise with at start-up."""

    def __init__(self, config, supervisor, tools, secrets):
        args = ("celery", "worker", "--skip-serve-logs", "--concurrency", str(config.worker_concurrency),
                "--without-mingle", "--without-gossip")
        super().__init__(config, supervisor, tools, "celery-worker", args, ("celery",))
        self.secrets = secrets

    def environment(self) -> dict[str, str]:
        return {
            # Results (task states the scheduler polls) go to the metadata DB.
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url(self.config, self.secrets())}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.config.worker_concurrency),
            # Celery's own default (24 h) stated explicitly: silences a start-up warning per process.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
        }

    def ready(self) -> bool | None:
        """Celery logs ``celery@<host> ready.`` once the worker consumes from the broker."""
        return True if " ready." in self.supervisor.output_since_spawn(self.name) else None


def components(config: StackConfig, supervisor: Supervisor, tools: AirflowTools) -> list[AirflowProcess]:
    """The processes every executor runs. The scheduler's and triggerer's log servers would bind
    0.0.0.0:8793/8794; everything shares AIRFLOW_HOME/logs here, so the api-server reads task
    logs from disk and they run without."""
    return [
        ApiServer(config, supervisor, tools),
        AirflowProcess(config, supervisor, tools, "scheduler", ("scheduler", "--skip-serve-logs"), ("scheduler",)),
        AirflowProcess(config, supervisor, tools, "dag-processor", ("dag-processor",),
                       ("dag-processor", "dag_processor")),
        AirflowProcess(config, supervisor, tools, "triggerer", ("triggerer", "--skip-serve-logs"), ("triggerer",)),
    ]
