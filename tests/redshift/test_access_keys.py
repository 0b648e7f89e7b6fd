"""The Redshift staging path with access-key credentials: the one place a secret enters SQL
text is the COPY's credentials, and it must reach no log.

``sparkify_aws`` holds an access key, a secret key and a session token (no ``role_arn``), as a
deployment without an IAM role for Redshift would; the staging task runs against the Redshift
stand-in (``support.fake_redshift``) with the amazon provider's S3Hook reading that
connection. The secrets must be in the COPY the stand-in received (else this proves nothing)
and in no log: the captured output, Airflow's log files, the error a failed COPY raises.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from support.fake_redshift import run_on_fake_redshift
from support.render import bind

# Made up per run, never committed: shaped like AWS's, so a masker that only knows the shape
# can't pass for one that knows the values.
ACCESS_KEY = "AKIA" + secrets.token_hex(8).upper()
SECRET_KEY = secrets.token_urlsafe(30)
SESSION_TOKEN = secrets.token_urlsafe(60)


@pytest.fixture
def access_key_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SPARKIFY_AWS", json.dumps({
        "conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
        "extra": {"region_name": "us-west-2", "aws_session_token": SESSION_TOKEN},
    }))


def every_log(capfd, *more: str) -> dict[str, str]:
    captured = capfd.readouterr()
    logs = {"stdout": captured.out, "stderr": captured.err}
    logs.update({f"extra {n}": text for n, text in enumerate(more)})
    for path in Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"):
        logs[str(path)] = path.read_text(errors="replace")
    return logs


@pytest.mark.parametrize("copy_fails", [False, True], ids=["copy succeeds", "copy fails past maxerror"])
def test_access_keys_reach_the_copy_and_no_log(access_key_connection, capfd, copy_fails):
    capfd.readouterr()
    capture = run_on_fake_redshift("stage_events", copy_fails=copy_fails, iam_role=False)

    (copy,) = [e.statement for e in capture.executed if e.statement.lstrip().upper().startswith("COPY ")]
    assert f"ACCESS_KEY_ID '{ACCESS_KEY}' SECRET_ACCESS_KEY '{SECRET_KEY}' SESSION_TOKEN '{SESSION_TOKEN}'" in copy
    assert "IAM_ROLE" not in copy
    assert isinstance(sqlglot.parse_one(bind(copy, {"table": "staging_events", "run_id": "r"}), read="redshift"), exp.Copy)
    assert (capture.error is not None) == copy_fails

    logs = every_log(capfd, str(capture.error or ""), repr(capture.result))
    assert "staging_events" in logs["stdout"] + logs["stderr"], "the task's log was not captured; this would prove nothing"
    for where, text in logs.items():
        for secret in (SECRET_KEY, SESSION_TOKEN):
            assert secret not in text, f"a credential appears in {where}"
