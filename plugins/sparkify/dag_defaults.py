"""Settings every Sparkify DAG shares."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum

from sparkify.alerts import SparkifyNotifier

# include/sql beside plugins/ (repository, docker compose); SPARKIFY_SQL_DIR for deployments that
# ship include/ elsewhere (MWAA: plugins.zip and dags/ live in different places).
SQL_DIR = Path(os.environ.get("SPARKIFY_SQL_DIR") or Path(__file__).resolve().parents[2] / "include" / "sql")
START_DATE = pendulum.parse(os.environ.get("SPARKIFY_START_DATE", "2018-11-01"), tz="UTC")
DEFAULT_ARGS = {
    "owner": "sparkify-data",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "email_on_retry": False,
    "email_on_failure": False,
    "on_failure_callback": SparkifyNotifier(),
}
