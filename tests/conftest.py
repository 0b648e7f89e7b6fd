"""Test session setup: a private PostgreSQL and S3 endpoint on free ports, and Airflow
pointed at them.

Airflow reads its configuration when first imported, so the environment is set here,
before any test module imports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from scripts.stack import LocalStack
from support.ports import free_ports

# Fixtures of the alert tests: local Slack-webhook and SMTP servers.
pytest_plugins = ["support.alert_servers"]

STATE_DIR = Path(tempfile.mkdtemp(prefix="sparkify-tests-", dir="/tmp"))
_PG_PORT, _S3_PORT, _API_PORT = free_ports(3)
STACK = LocalStack(STATE_DIR, pg_port=_PG_PORT, s3_port=_S3_PORT, api_port=_API_PORT, bucket="sparkify-test")
os.environ.update(STACK.env())
os.environ["SPARKIFY_START_DATE"] = "2018-11-01"


def pytest_unconfigure(config):
    # Also when no test used the servers (their teardown removes it otherwise).
    shutil.rmtree(STATE_DIR, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (``CI=true``, as ``.ci/run`` is run) a skipped test fails: the skips here mean a
    missing tool (chromium, redis-server) or an opt-out, and CI must run every test."""
    report = yield
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but CI=true requires every test to run: {reason}"
    return report


@pytest.fixture(scope="session")
def servers():
    """PostgreSQL (warehouse + Airflow metadata) and the S3 endpoint, for the whole session."""
    STACK.start_postgres()
    STACK.start_s3()
    yield STACK
    if "airflow.settings" in sys.modules:
        # Close Airflow's pooled connections before the server goes away.
        sys.modules["airflow.settings"].dispose_orm()
    STACK.stop_s3()
    STACK.stop_postgres()
    shutil.rmtree(STATE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db(servers):
    """A migrated Airflow metadata database (dag.test() needs one)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return servers
