"""What a local stack is: its state dir, ports, bucket, executor and any extra environment.

One frozen ``StackConfig`` describes a stack; every other module reads from it. Tests and the
benchmark describe variations (other ports, more Airflow settings) here instead of subclassing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .errors import StackError

REPO_ROOT = Path(__file__).resolve().parents[2]

HOST = "127.0.0.1"
REGION = "us-east-1"
# moto accepts any credentials. They must differ from every bucket name: Airflow masks the
# connection's secret in task logs, and a secret equal to the bucket hides every s3:// URL.
S3_ACCESS_KEY = "local-access-key"
S3_SECRET_KEY = "local-secret-key"

APP_ROLE = "sparkify"
WAREHOUSE_DB = "sparkify"
METADATA_DB = "airflow"
SUPERUSER = "postgres"

EXECUTORS = ("LocalExecutor", "CeleryExecutor")
CELERY_WORKER_CONCURRENCY = 4
# Environment marker set on every process we spawn: identifies "our" processes.
STATE_MARKER = "SPARKIFY_STACK_STATE"

DEFAULTS = {"pg_port": 15432, "s3_port": 19000, "api_port": 18080, "redis_port": 16379, "bucket": "sparkify-local"}


def normalize_executor(name: str) -> str:
    """``LocalExecutor``/``CeleryExecutor`` from that name or ``local``/``celery`` (any case)."""
    key = name.strip().lower().removesuffix("executor")
    for executor in EXECUTORS:
        if executor.lower().removesuffix("executor") == key:
            return executor
    raise StackError(f"executor {name!r} is not supported; use one of {', '.join(EXECUTORS)}")


def env_port(name: str, default: int) -> int:
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


@dataclass(frozen=True)
class StackConfig:
    """Everything that tells one local stack from another.

    ``extra_env`` is added last to the environment of every Airflow process (and to ``env()``),
    e.g. ``{"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}`` for a stack that only runs what it
    is told to.
    """

    state_dir: Path
    pg_port: int = DEFAULTS["pg_port"]
    s3_port: int = DEFAULTS["s3_port"]
    api_port: int = DEFAULTS["api_port"]
    bucket: str = DEFAULTS["bucket"]
    repo_root: Path = REPO_ROOT
    executor: str = "LocalExecutor"
    redis_port: int = DEFAULTS["redis_port"]  # CeleryExecutor stacks only
    worker_concurrency: int = CELERY_WORKER_CONCURRENCY
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        normal = {
            "state_dir": Path(self.state_dir).absolute(),
            "repo_root": Path(self.repo_root).absolute(),
            "executor": normalize_executor(self.executor),
            "extra_env": MappingProxyType(dict(self.extra_env)),
        }
        for name in ("pg_port", "s3_port", "api_port", "redis_port", "worker_concurrency"):
            normal[name] = int(getattr(self, name))
        for name, value in normal.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_environment(cls) -> StackConfig:
        """The stack the Makefile means: ``SPARKIFY_*`` variables over the defaults."""
        return cls(
            Path(os.environ.get("SPARKIFY_STATE_DIR") or REPO_ROOT / ".state"),
            pg_port=env_port("SPARKIFY_PG_PORT", DEFAULTS["pg_port"]),
            s3_port=env_port("SPARKIFY_S3_PORT", DEFAULTS["s3_port"]),
            api_port=env_port("SPARKIFY_API_PORT", DEFAULTS["api_port"]),
            bucket=os.environ.get("SPARKIFY_BUCKET") or DEFAULTS["bucket"],
            executor=os.environ.get("SPARKIFY_EXECUTOR") or "LocalExecutor",
            redis_port=env_port("SPARKIFY_REDIS_PORT", DEFAULTS["redis_port"]),
        )

    @property
    def celery(self) -> bool:
        """True when tasks run on a Celery worker (with a Redis broker) instead of LocalExecutor."""
        return self.executor == "CeleryExecutor"

    # ------------------------------------------------------------------ places

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.env"

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def redis_dir(self) -> Path:
        return self.state_dir / "redis"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"
