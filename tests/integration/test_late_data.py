"""S3 data that moves after its hours ran: late events, misfiled events, shrunk files, late
and changed songs, deleted objects. Each case ends in the warehouse the model computes from
the final S3 state and the hours loaded, which is what a fresh run over the final data gives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta

import psycopg
import pytest

from support.model import event_time, expected_warehouse, read_events, read_json_values, read_songs
from support.pipeline import (
    assert_matches_model, query, replace_bucket_contents, reset_warehouse, run_dag, run_etl, s3_client, star_snapshot,
    task_result, write_lines,
)
from scripts.sample_data import generate

HOUR = timedelta(hours=1)
DAY = date(2018, 11, 15)
DAY_KEY = "log_data/2018/11/2018-11-15-events.json"
NEXT_DAY_KEY = "log_data/2018/11/2018-11-16-events.json"


def hour(h: int, day: int = 15) -> datetime:
    return datetime(2018, 11, day, h)


@pytest.fixture(scope="module")
def final_data(tmp_path_factory, airflow_db):
    """The data as it finally is in S3."""
    root = tmp_path_factory.mktemp("final")
    generate(root, seed=21, songs=40, start_day=DAY, days=2, events_per_day=700, users=8, match_share=0.7)
    return root


@pytest.fixture
def stack(airflow_db):
    reset_warehouse(airflow_db)
    return airflow_db


def run_hours(*hours: datetime, **params) -> list:
    runs = [run_etl(start, start + HOUR, **params) for start in hours]
    assert [run.state for run in runs] == ["success"] * len(runs)
    return runs


def model_of(data_dir, hours):
    return expected_warehouse(read_events(data_dir), read_songs(data_dir), [(h, h + HOUR) for h in hours])


def copy_of(data_dir, tmp_path, name="earlier"):
    target = tmp_path / name
    shutil.copytree(data_dir, target)
    return target


def day_path(root, key=DAY_KEY):
    return root / key


def plays_in(events, start: datetime, end: datetime):
    return [e for e in events if e["page"] == "NextSong" and e["userId"] and start <= event_time(e["ts"]) < end]


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_late_events_refresh_the_loaded_hours_they_belong_to(final_data, stack, tmp_path, capfd, order):
    """The day file first holds its events before 18:00; hours 16-19 run; then the full file
    arrives and only hour 20 runs. Hours 18 and 19 must be refreshed by that run."""
    earlier = copy_of(final_data, tmp_path)
    events = read_json_values(day_path(final_data))
    write_lines(day_path(earlier), [e for e in events if event_time(e["ts"]) < hour(18)])
    assert plays_in(events, hour(18), hour(20)), "the late events include plays"
    replace_bucket_contents(stack, earlier)
    hours = [hour(16), hour(17), hour(18), hour(19)]
    run_hours(*(hours if order == "forward" else reversed(hours)))
    capfd.readouterr()

    replace_bucket_contents(stack, final_data)
    [run] = run_hours(hour(20))
    assert_matches_model(stack, model_of(final_data, [*hours, hour(20)]))
    log = capfd.readouterr().out
    assert "the change touches 2 hours already loaded" in log
    assert "refreshed 2 earlier loaded hours whose staged events changed" in log
    assert "2018-11-15 18:00" in log and "2018-11-15 19:00" in log
    assert query(stack, "SELECT count(*) FROM stale_hours") == [(0,)], "the queue was taken"
    assert query(stack, "SELECT count(*) FROM loaded_hours WHERE run_id = %s", (run.run_id,)) == [(3,)]


def test_an_event_in_the_next_days_file_refreshes_its_hour(final_data, stack, tmp_path):
    moved_dir = copy_of(final_data, tmp_path, "moved")
    events = read_json_values(day_path(final_data))
    late = plays_in(events, hour(22), hour(23))[-1]
    write_lines(day_path(moved_dir), [e for e in events if e is not late])
    write_lines(day_path(moved_dir, NEXT_DAY_KEY), [late, *read_json_values(day_path(final_data, NEXT_DAY_KEY))])
    replace_bucket_contents(stack, moved_dir)

    run_hours(hour(22))
    assert query(stack, "SELECT count(*) FROM songplays WHERE start_time = %s", (event_time(late["ts"]),)) == [(0,)]
    run_hours(hour(1, day=16))  # stages the next day's file, which holds the misfiled event
    assert_matches_model(stack, model_of(moved_dir, [hour(22), hour(1, day=16)]))
    assert query(stack, "SELECT count(*) FROM songplays WHERE start_time = %s", (event_time(late["ts"]),)) == [(1,)]


def test_a_file_replaced_by_fewer_records_removes_them_and_their_only_user(final_data, stack, tmp_path):
    replace_bucket_contents(stack, final_data)
    hours = [hour(16), hour(17), hour(18)]
    run_hours(*hours)
    shrunk = copy_of(final_data, tmp_path, "shrunk")
    events = read_json_values(day_path(final_data))
    in_hours = [e for e in events if hour(16) <= event_time(e["ts"]) < hour(19) and e["userId"]]
    # Drop one user's every event (they must leave users) and every other play of hour 17.
    gone_user = in_hours[0]["userId"]
    kept = [e for e in events
            if e["userId"] != gone_user
            and not (e in plays_in(events, hour(17), hour(18)) and events.index(e) % 2)]
    assert len(kept) < len(events) - 2
    write_lines(day_path(shrunk), kept)
    other_day = read_json_values(day_path(shrunk, NEXT_DAY_KEY))
    write_lines(day_path(shrunk, NEXT_DAY_KEY), [e for e in other_day if e["userId"] != gone_user])
    replace_bucket_contents(stack, shrunk)

    run_hours(hour(23))
    model = model_of(shrunk, [*hours, hour(23)])
    assert int(gone_user) not in model.users
    assert_matches_model(stack, model)
    assert query(stack, "SELECT count(*) FROM users WHERE user_id = %s", (int(gone_user),)) == [(0,)]


def _songs_of_plays(data_dir, start, end):
    """Song files whose song some play in [start, end) matches."""
    played = {(e["song"], e["artist"], e["length"]) for e in plays_in(read_events(data_dir), start, end)}
    return [path for path in sorted((data_dir / "song_data").rglob("*.json"))
            if (lambda s: (s["title"], s["artist_name"], s["duration"]))(json.loads(path.read_text())) in played]


def test_late_song_files_match_the_loaded_plays(final_data, stack, tmp_path, capfd):
    early = copy_of(final_data, tmp_path, "no_songs_yet")
    late_files = _songs_of_plays(final_data, hour(10), hour(14))[:3]
    assert late_files
    for path in late_files:
        (early / path.relative_to(final_data)).unlink()
    replace_bucket_contents(stack, early)
    hours = [hour(10), hour(11), hour(12), hour(13)]
    run_hours(*hours)
    capfd.readouterr()

    replace_bucket_contents(stack, final_data)
    run_hours(hour(14))
    assert_matches_model(stack, model_of(final_data, [*hours, hour(14)]))
    log = capfd.readouterr().out
    assert "song match keys (title, artist, duration) changed" in log
    assert "re-matched" in log and "loaded plays whose songs changed" in log
    assert query(stack, "SELECT count(*) FROM stale_song_matches") == [(0,)]


def test_a_changed_song_title_unmatches_and_rematches_plays(final_data, stack, tmp_path):
    replace_bucket_contents(stack, final_data)
    hours = [hour(10), hour(11), hour(12)]
    run_hours(*hours)
    changed = copy_of(final_data, tmp_path, "retitled")
    path = changed / _songs_of_plays(final_data, hour(10), hour(13))[0].relative_to(final_data)
    song = json.loads(path.read_text())
    before = query(stack, "SELECT count(*) FROM songplays WHERE song_id = %s", (song["song_id"],))[0][0]
    assert before > 0
    path.write_text(json.dumps({**song, "title": song["title"] + " (Live)"}, ensure_ascii=False))
    replace_bucket_contents(stack, changed)

    run_hours(hour(13))
    assert_matches_model(stack, model_of(changed, [*hours, hour(13)]))
    assert query(stack, "SELECT count(*) FROM songplays WHERE song_id = %s", (song["song_id"],)) == [(0,)]


@pytest.mark.parametrize("remove", [False, True])
def test_deleted_objects_are_recorded_and_removed_only_when_asked(final_data, stack, tmp_path, remove):
    replace_bucket_contents(stack, final_data)
    hours = [hour(10), hour(11)]
    run_hours(*hours)
    gone = _songs_of_plays(final_data, hour(10), hour(12))[0]
    gone_key = gone.relative_to(final_data).as_posix()
    after_delete = copy_of(final_data, tmp_path, "deleted")
    (after_delete / gone_key).unlink()
    s3_client(stack).delete_object(Bucket=stack.bucket, Key=gone_key)

    [run] = run_hours(hour(12), remove_deleted_objects=remove)
    assert task_result(run, "stage_songs")["objects_missing"] == 1
    recorded = query(stack, "SELECT source_key, rows_staged, rows_removed FROM stage_missing_objects")
    assert recorded == [(gone_key, 1, remove)]
    # Kept, the staged song still matches; removed, the warehouse is that of the data left.
    assert_matches_model(stack, model_of(after_delete if remove else final_data, [*hours, hour(12)]))
    staged = query(stack, "SELECT count(*) FROM staging_songs WHERE source_key = %s", (gone_key,))
    assert staged == [(0 if remove else 1,)]

    # Found again, it is staged again and no longer missing.
    replace_bucket_contents(stack, final_data)
    run_hours(hour(13))
    assert query(stack, "SELECT count(*) FROM stage_missing_objects") == [(0,)]
    assert_matches_model(stack, model_of(final_data, [*hours, hour(12), hour(13)]))


def test_the_same_change_during_two_concurrent_runs(final_data, stack, tmp_path):
    earlier = copy_of(final_data, tmp_path)
    events = read_json_values(day_path(final_data))
    write_lines(day_path(earlier), [e for e in events if event_time(e["ts"]) < hour(18)])
    replace_bucket_contents(stack, earlier)
    hours = [hour(16), hour(17), hour(18), hour(19)]
    run_hours(*hours)

    replace_bucket_contents(stack, final_data)
    code = ("import sys; from support.pipeline import run_etl; "
            "sys.exit(0 if run_etl(sys.argv[1], sys.argv[2]).state == 'success' else 1)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = [subprocess.Popen([sys.executable, "-c", code, f"{h:%Y-%m-%dT%H}:00:00Z", f"{h + HOUR:%Y-%m-%dT%H}:00:00Z"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for h in (hour(20), hour(21))]
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err.decode()[-3000:]
    assert_matches_model(stack, model_of(final_data, [*hours, hour(20), hour(21)]))
    concurrent = star_snapshot(stack)

    # A fresh run over the final data gives the same warehouse, songplay_ids included.
    reset_warehouse(stack)
    run_hours(*hours, hour(20), hour(21))
    assert star_snapshot(stack) == concurrent


def _run_audit():
    from airflow.dag_processing.dagbag import DagBag

    from support import REPO

    dag = DagBag(str(REPO / "dags")).dags["sparkify_audit"]
    for task in dag.tasks:
        task.retries = 0
    return dag.test()


def test_drift_checks_fail_when_history_is_broken_on_purpose(final_data, stack, capfd):
    replace_bucket_contents(stack, final_data)
    run_hours(hour(10), hour(11), hour(12))
    assert _run_audit().state == "success"

    # A play of hour 10 loses its song match, as a stale match would look.
    matched = query(stack, "SELECT songplay_id FROM songplays WHERE song_id IS NOT NULL "
                           "AND start_time >= %s AND start_time < %s ORDER BY songplay_id LIMIT 1", (hour(10), hour(11)))
    assert matched
    with psycopg.connect(stack.warehouse_conninfo) as conn:
        conn.execute("UPDATE songplays SET song_id = NULL, artist_id = NULL WHERE songplay_id = %s", matched[0])
    capfd.readouterr()
    assert _run_audit().state == "failed"
    log = capfd.readouterr().out
    assert "FAILED loaded_hours.songplays_current" in log and "2018, 11, 15, 10, 0" in log

    # The hourly checks see it when the run covers the hour; a run of another hour doesn't pay for it.
    run = run_dag({"start": f"{hour(10):%Y-%m-%dT%H}:00:00Z", "end": f"{hour(11):%Y-%m-%dT%H}:00:00Z"},
                  mark_success_pattern=r"(?!quality_checks$).*")
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["quality_checks"] == "failed"
    assert "1 failing check(s) on loaded_hours:\nFAILED loaded_hours.songplays_current" in capfd.readouterr().out
    assert run_etl(hour(13), hour(14)).state == "success"
    # Re-running the hour repairs it.
    run_hours(hour(10))
    assert _run_audit().state == "success"
    assert_matches_model(stack, model_of(final_data, [hour(10), hour(11), hour(12), hour(13)]))
