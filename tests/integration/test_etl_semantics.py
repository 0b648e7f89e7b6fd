"""sparkify_etl against a real PostgreSQL and S3 endpoint, checked against an independent
Python model of the expected warehouse (tests/model.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest

from model import event_time, expected_warehouse, read_events, read_songs
from pipeline import query, replace_bucket_contents, reset_warehouse, run_scheduled, run_window, star_snapshot, write_lines
from scripts.sample_data import generate

HOUR = timedelta(hours=1)
# Four hours across a day boundary, so runs touch two day files.
FIRST_HOUR = datetime(2018, 11, 1, 22)
HOURS = [FIRST_HOUR + i * HOUR for i in range(4)]
WINDOW = (HOURS[0], HOURS[-1] + HOUR)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, airflow_db):
    data_dir = tmp_path_factory.mktemp("dataset")
    generate(data_dir, seed=7, songs=80, start_day=date(2018, 11, 1), days=2, events_per_day=600, users=20, match_share=0.6)
    _add_disagreeing_song_files(data_dir)
    replace_bucket_contents(airflow_db, data_dir)
    return data_dir


def _add_disagreeing_song_files(data_dir):
    """Song files that disagree: an artist described twice, and a song_id in two files."""
    songs = read_songs(data_dir)
    first = songs[0]
    extra_dir = data_dir / "song_data" / "Z" / "Z" / "Z"
    extra_dir.mkdir(parents=True)
    same_artist = {**first, "song_id": "SOZZZZZZZZZZZZZZZ1", "title": "Another Take", "artist_location": "Elsewhere",
                   "artist_latitude": None, "artist_longitude": None}
    same_song = {**songs[1], "title": "A Different Title", "year": 1999}
    (extra_dir / "TRZZZZZZZZZZZZZZZ1.json").write_text(json.dumps(same_artist, ensure_ascii=False))
    (extra_dir / "TRZZZZZZZZZZZZZZZ2.json").write_text(json.dumps(same_song, ensure_ascii=False))


@pytest.fixture
def stack(airflow_db):
    reset_warehouse(airflow_db)
    return airflow_db


def assert_matches_model(stack, data_dir, windows):
    model = expected_warehouse(read_events(data_dir), read_songs(data_dir), windows)
    snapshot = star_snapshot(stack)
    songplays = sorted((row[1:] for row in snapshot["songplays"]), key=repr)
    assert songplays == model.songplays
    assert {row[0]: row[1:] for row in snapshot["users"]} == model.users
    assert {row[0]: row[1:] for row in snapshot["songs"]} == model.songs
    assert {row[0]: row[1:] for row in snapshot["artists"]} == model.artists
    assert {row[0]: row[1:] for row in snapshot["time"]} == model.time
    return model


def test_one_window_matches_independent_model(dataset, stack):
    assert run_window(*WINDOW).state == "success"
    model = assert_matches_model(stack, dataset, [WINDOW])

    # The data exercises every rule: matched and unmatched songs, millisecond timestamps,
    # a user whose level changes inside the window, logged-out events.
    assert any(play[3] for play in model.songplays) and any(play[3] is None for play in model.songplays)
    assert any(play[0].microsecond for play in model.songplays)
    events = [e for e in read_events(dataset) if WINDOW[0] <= event_time(e["ts"]) < WINDOW[1]]
    levels = {}
    for event in events:
        if event["userId"]:
            levels.setdefault(event["userId"], set()).add(event["level"])
    assert any(len(seen) > 1 for seen in levels.values()), "no user changes level in the window"
    assert any(not e["userId"] for e in events)
    ids = [row[0] for row in query(stack, "SELECT songplay_id FROM songplays")]
    assert len(ids) == len(set(ids)) == len(model.songplays)


def test_hourly_any_order_reruns_and_one_window_give_identical_warehouse(dataset, stack):
    for hour in HOURS:
        assert run_window(hour, hour + HOUR).state == "success"
    forward = star_snapshot(stack)
    assert_matches_model(stack, dataset, [WINDOW])

    reset_warehouse(stack)
    for hour in reversed(HOURS):
        assert run_window(hour, hour + HOUR).state == "success"
    assert star_snapshot(stack) == forward, "backwards backfill differs from forward"

    assert run_window(HOURS[1], HOURS[1] + HOUR).state == "success"
    assert run_window(*WINDOW).state == "success"
    assert star_snapshot(stack) == forward, "re-running changed the warehouse"

    reset_warehouse(stack)
    assert run_window(*WINDOW).state == "success"
    assert star_snapshot(stack) == forward, "one long window differs from hourly runs"


def test_users_take_the_latest_event_of_the_hours_loaded_so_far(dataset, stack):
    later, earlier = HOURS[2], HOURS[0]
    assert run_window(later, later + HOUR).state == "success"
    assert run_window(earlier, earlier + HOUR).state == "success"
    assert_matches_model(stack, dataset, [(earlier, earlier + HOUR), (later, later + HOUR)])


def test_concurrent_runs_give_the_same_warehouse(dataset, stack):
    assert run_window(*WINDOW).state == "success"
    expected = star_snapshot(stack)
    reset_warehouse(stack)
    # Create the tables first so concurrent runs race on loads, not on DDL.
    assert run_window("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z").state == "success"

    code = (
        "import sys; from pipeline import run_window; "
        "sys.exit(0 if run_window(sys.argv[1], sys.argv[2]).state == 'success' else 1)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = [
        subprocess.Popen([sys.executable, "-c", code, hour.isoformat() + "Z", (hour + HOUR).isoformat() + "Z"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for hour in HOURS
    ]
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err.decode()[-3000:]
    assert star_snapshot(stack) == expected


def test_changed_object_replaces_its_rows_and_unchanged_objects_are_skipped(dataset, stack, tmp_path):
    assert run_window(*WINDOW).state == "success"
    ledger_before = dict(query(stack, "SELECT s3_key, run_id FROM stage_load_ledger"))

    assert run_window(*WINDOW).state == "success"
    assert dict(query(stack, "SELECT s3_key, run_id FROM stage_load_ledger")) == ledger_before, \
        "unchanged objects were staged again"

    changed = tmp_path / "changed"
    shutil.copytree(dataset, changed)
    day_file = changed / "log_data" / "2018" / "11" / "2018-11-01-events.json"
    events = [json.loads(line) for line in day_file.read_text(encoding="utf-8").splitlines()]
    plays = [i for i, e in enumerate(events) if e["page"] == "NextSong" and e["userId"]
             and WINDOW[0] <= event_time(e["ts"]) < WINDOW[1]]
    events[plays[0]]["userAgent"] = "Changed/1.0"
    del events[plays[1]]
    write_lines(day_file, events)
    replace_bucket_contents(stack, changed)
    try:
        assert run_window(*WINDOW).state == "success"
        assert_matches_model(stack, changed, [WINDOW])
        staged = query(stack, "SELECT count(*) FROM staging_events WHERE source_key = %s",
                       ("log_data/2018/11/2018-11-01-events.json",))[0][0]
        assert staged == len(events)
        ledger_after = dict(query(stack, "SELECT s3_key, run_id FROM stage_load_ledger"))
        changed_keys = {key for key in ledger_after if ledger_after[key] != ledger_before[key]}
        assert changed_keys == {"log_data/2018/11/2018-11-01-events.json"}
    finally:
        replace_bucket_contents(stack, dataset)


def test_empty_hours_succeed_with_zero_rows(dataset, stack):
    # An hour with no file at all, long after the sample data.
    assert run_window("2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z").state == "success"
    # A scheduled run (no params): the data interval is the window.
    assert run_scheduled(datetime(2027, 1, 1, 5, tzinfo=timezone.utc)).state == "success"
    assert query(stack, "SELECT count(*) FROM songplays")[0][0] == 0
    assert query(stack, "SELECT count(*) FROM users")[0][0] == 0
    # The songs are staged whatever the hour.
    assert query(stack, "SELECT count(*) FROM songs")[0][0] > 0


def test_invalid_window_fails(dataset, stack):
    assert run_window("2018-11-01T05:00:00Z", "2018-11-01T04:00:00Z").state == "failed"
