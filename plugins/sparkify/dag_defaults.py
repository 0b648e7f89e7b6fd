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
# Task and DAG documentation (doc_md), beside the SQL.
DOCS_DIR = SQL_DIR.parent / "docs"
START_DATE = pendulum.parse(os.environ.get("SPARKIFY_START_DATE", "2018-11-01"), tz="UTC")
DEFAULT_ARGS = {
    "owner": "sparkify-data",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "email_on_retry": False,
    "email_on_failure": False,
    "on_failure_callback": SparkifyNotifier(),
}


def task_doc(task_id: str) -> str:
    """A task's doc_md: ``include/docs/<task_id>.md`` (a DAG takes the path itself)."""
    return (DOCS_DIR / f"{task_id}.md").read_text()
