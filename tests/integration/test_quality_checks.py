"""A failing check fails its task and says what failed: the check, its SQL, the expected and
actual values, and a few offending rows."""

from __future__ import annotations

import psycopg
import pytest

from pipeline import replace_bucket_contents, reset_warehouse, run_window
from scripts.sample_data import generate

WINDOW = ("2018-11-01T10:00:00Z", "2018-11-01T12:00:00Z")


@pytest.fixture
def loaded(airflow_db, tmp_path):
    generate(tmp_path / "data", seed=5, songs=20, days=1, events_per_day=300, users=8)
    replace_bucket_contents(airflow_db, tmp_path / "data")
    reset_warehouse(airflow_db)
    assert run_window(*WINDOW).state == "success"
    return airflow_db


def test_failing_checks_fail_the_run_and_show_offending_rows(loaded, capfd):
    with psycopg.connect(loaded.warehouse_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO users VALUES (424242, 'Bad', 'Row', 'X', 'gold')")
    capfd.readouterr()

    run = run_window(*WINDOW)

    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["quality_checks.users_table"] == "failed"
    assert states["quality_checks.songplays_table"] == "success"
    log = capfd.readouterr().out
    assert "level_allowed" in log and "gender_allowed" in log and "FAIL" in log
    assert "level IN ('free', 'paid')" in log  # the check's SQL
    assert "424242" in log and "gold" in log  # the offending row


def test_checks_pass_and_report_on_correct_data(loaded, capfd):
    capfd.readouterr()
    assert run_window(*WINDOW).state == "success"
    log = capfd.readouterr().out
    assert "user_in_users" in log and "matches_staged_plays" in log and "FAIL" not in log
