"""Credentials never reach the task logs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.pipeline import replace_bucket_contents, reset_warehouse, run_etl
from scripts.sample_data import generate

FAKE_SECRET = "FAKE-S3CRET-sparkify-7f3a9c"


@pytest.fixture
def fake_aws_secret(monkeypatch, airflow_db):
    connection = json.loads(os.environ["AIRFLOW_CONN_SPARKIFY_AWS"])
    connection["password"] = FAKE_SECRET  # moto accepts any secret key
    monkeypatch.setenv("AIRFLOW_CONN_SPARKIFY_AWS", json.dumps(connection))
    return airflow_db


def test_no_credential_appears_in_any_log(fake_aws_secret, tmp_path, capfd):
    stack = fake_aws_secret
    data_dir = tmp_path / "data"
    generate(data_dir, seed=11, songs=10, days=1, events_per_day=200, users=5)
    replace_bucket_contents(stack, data_dir)
    reset_warehouse(stack)

    assert run_etl("2018-11-01T00:00:00Z", "2018-11-01T06:00:00Z").state == "success"

    secrets = {FAKE_SECRET, stack.secrets["SPARKIFY_PG_PASSWORD"]}
    captured = capfd.readouterr()
    logs = {"stdout": captured.out, "stderr": captured.err}
    for path in Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"):
        logs[str(path)] = path.read_text(errors="replace")
    assert "staging_events" in captured.out, "task logs were not captured; the test would prove nothing"
    for where, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"a credential appears in {where}"
