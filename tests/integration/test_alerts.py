"""A failed task of a real ETL run (dag.test against PostgreSQL and the S3 endpoint) alerts
through the providers' notifiers: Slack's webhook notifier to a local HTTP server standing in
for the webhook, and the SMTP notifier to a local SMTP server. Each message names the task, the
run, the window, the error and links to the task's log."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from support.pipeline import run_etl

START, END = "2018-11-01T00:00:00Z", "2018-11-01T03:00:00Z"


@pytest.fixture
def failed_run(airflow_db, slack_webhook, smtp_server, monkeypatch):
    """One run whose staging tasks fail: the bucket it is pointed at does not exist."""
    monkeypatch.setenv("AIRFLOW_VAR_SPARKIFY_BUCKET", "no-such-bucket")
    dag_run = run_etl(START, END)
    assert dag_run.state == "failed"
    return dag_run


def expected_lines(dag_run, task_id: str) -> list[str]:
    return [
        f"sparkify_etl.{task_id} failed",
        f"Run: {dag_run.run_id}",
        f"Task: {task_id}",
        "Window: [2018-11-01 00:00:00, 2018-11-01 03:00:00) UTC",
        "no-such-bucket",  # the error: the bucket the task could not find
        "does not exist",
        f"/dags/sparkify_etl/runs/{quote(dag_run.run_id, safe='')}/tasks/{task_id}",  # the log link
    ]


def test_a_failed_task_alerts_through_the_slack_webhook_notifier(failed_run, slack_webhook):
    by_task = {}
    for message in slack_webhook:
        title = message["text"].splitlines()[0]
        by_task[title.split(".", 1)[1].split(" ", 1)[0]] = message["text"]
    # The two staging tasks failed; the rest never ran (upstream failed), so sent nothing.
    assert set(by_task) == {"stage_events", "stage_songs"}, slack_webhook
    for task_id, text in by_task.items():
        for expected in expected_lines(failed_run, task_id):
            assert expected in text, f"{expected!r} not in the Slack message:\n{text}"
        assert text.startswith(f"*[Sparkify] sparkify_etl.{task_id} failed*")


def test_a_failed_task_alerts_through_the_smtp_notifier(failed_run, smtp_server):
    assert len(smtp_server) == 2, [m["Subject"] for m in smtp_server]
    for message in smtp_server:
        assert message["From"] == "airflow@sparkify.test"
        assert {address.strip() for address in message["To"].split(",")} == {"oncall@sparkify.test", "data@sparkify.test"}
        task_id = message["Subject"].removeprefix("[Sparkify] sparkify_etl.").removesuffix(" failed")
        assert task_id in ("stage_events", "stage_songs")
        body = message.get_body(("html",)).get_content()
        for expected in expected_lines(failed_run, task_id)[1:]:
            assert expected in body, f"{expected!r} not in the email:\n{body}"
