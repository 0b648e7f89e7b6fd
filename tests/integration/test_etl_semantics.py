"""sparkify_etl against a real PostgreSQL and S3 endpoint, checked against an independent
Python model of the expected warehouse (tests/support/model.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest

from support.model import event_time, expected_warehouse, read_events, read_songs
from support.pipeline import assert_matches_model as matches_model
from support.pipeline import (
    etl_dag, execute, query, replace_bucket_contents, reset_warehouse, run_dag, run_scheduled, run_etl, s3_client,
    star_snapshot, task_result, write_lines,
)
from scripts.sample_data import generate
from sparkify.catalog import EVENTS_KEY

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
    matches_model(stack, model)
    return model


def test_one_window_matches_independent_model(dataset, stack):
    assert run_etl(*WINDOW).state == "success"
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
    # One play per distinct NextSong event (user, session, item, ts) of a logged-in user in the
    # window, counted from the raw events: none dropped, none split in two.
    plays = {(e["userId"], e["sessionId"], e["itemInSession"], e["ts"])
             for e in events if e["page"] == "NextSong" and str(e["userId"] or "").strip()}
    assert query(stack, "SELECT count(*) FROM songplays") == [(len(plays),)]


def test_hourly_any_order_reruns_and_one_window_give_identical_warehouse(dataset, stack):
    for hour in HOURS:
        assert run_etl(hour, hour + HOUR).state == "success"
    forward = star_snapshot(stack)
    assert_matches_model(stack, dataset, [WINDOW])

    reset_warehouse(stack)
    for hour in reversed(HOURS):
        assert run_etl(hour, hour + HOUR).state == "success"
    assert star_snapshot(stack) == forward, "backwards backfill differs from forward"

    assert run_etl(HOURS[1], HOURS[1] + HOUR).state == "success"
    assert run_etl(*WINDOW).state == "success"
    assert star_snapshot(stack) == forward, "re-running changed the warehouse"

    reset_warehouse(stack)
    assert run_etl(*WINDOW).state == "success"
    assert star_snapshot(stack) == forward, "one long window differs from hourly runs"


# Hand-built events for two days of their own: user 9001's name, gender and level change
# inside an hour, between hours and across the day boundary; 9002 skips the middle hour.
USER_HOURS = [datetime(2018, 11, 10, 22), datetime(2018, 11, 10, 23), datetime(2018, 11, 11, 0)]
USER_EVENTS = [
    # (user, minutes after USER_HOURS[0], page, first name, last name, gender, level)
    (9001, 10, "NextSong", "Ann", "Adams", "F", "free"),
    (9001, 50, "Upgrade", "Anne", "Adams", "F", "paid"),
    (9002, 20, "NextSong", "Bo", "Diaz", "M", "free"),
    (9001, 65, "NextSong", "Anna", "Baker", "M", "paid"),
    (9001, 90, "Downgrade", "Anna", "Baker", "M", "free"),
    (9001, 140, "NextSong", "Annie", "Clark", "F", "paid"),
    (9002, 150, "Home", "Bob", "Dyer", "F", "paid"),
]


def _user_event(number, user_id, minutes, page, first_name, last_name, gender, level):
    moment = USER_HOURS[0] + timedelta(minutes=minutes, milliseconds=number)
    return {
        "artist": "Nobody" if page == "NextSong" else None, "auth": "Logged In", "firstName": first_name,
        "gender": gender, "itemInSession": number, "lastName": last_name,
        "length": 180.5 if page == "NextSong" else None, "level": level, "location": "Springfield, IL",
        "method": "PUT" if page == "NextSong" else "GET", "page": page, "registration": 1540000000000.0,
        "sessionId": 900 + user_id % 10, "song": "No Such Song" if page == "NextSong" else None, "status": 200,
        "ts": int((moment - datetime(1970, 1, 1)).total_seconds() * 1000), "userAgent": "Test/1.0",
        "userId": str(user_id),
    }


def _latest_user_values(events, hours):
    """Each user's values from their latest event (by ts) in the given hours, from the JSON."""
    latest = {}
    for event in events:
        if event_time(event["ts"]).replace(minute=0, second=0, microsecond=0) in hours:
            user_id = int(event["userId"])
            if user_id not in latest or event["ts"] > latest[user_id]["ts"]:
                latest[user_id] = event
    return {user_id: (e["firstName"], e["lastName"], e["gender"], e["level"]) for user_id, e in latest.items()}


def test_users_take_the_latest_event_of_the_hours_loaded_so_far(dataset, stack):
    events = [_user_event(number, *values) for number, values in enumerate(USER_EVENTS)]
    per_hour = [_latest_user_values(events, {hour})[9001] for hour in USER_HOURS]
    # Precondition: every field of 9001 changes from hour to hour, across the day boundary too,
    # and within the first hour, so a stale or wrong pick shows.
    for before, after in zip(per_hour, per_hour[1:]):
        assert all(a != b for a, b in zip(before, after)), (before, after)
    assert events[0]["firstName"] != events[1]["firstName"] and events[0]["level"] != events[1]["level"]

    client = s3_client(stack)
    keys = []
    for day in sorted({hour.date() for hour in USER_HOURS}):
        key = day.strftime(EVENTS_KEY)
        lines = [e for e in events if event_time(e["ts"]).date() == day]
        client.put_object(Bucket=stack.bucket, Key=key,
                          Body="".join(json.dumps(e) + "\n" for e in lines).encode())
        keys.append(key)
    try:
        for order in (USER_HOURS, USER_HOURS[::-1]):
            reset_warehouse(stack)
            loaded = set()
            for hour in order:
                assert run_etl(hour, hour + HOUR).state == "success"
                loaded.add(hour)
                users = {row[0]: row[1:] for row in query(stack, "SELECT * FROM users")}
                assert users == _latest_user_values(events, loaded), f"after {sorted(loaded)}"
        # After all hours, in either order: the last event of the last hour.
        assert users[9001] == per_hour[-1]
    finally:
        client.delete_objects(Bucket=stack.bucket, Delete={"Objects": [{"Key": key} for key in keys]})


def test_full_refresh_rebuilds_the_dimensions_like_the_hourly_runs(dataset, stack, capfd):
    for hour in HOURS:
        assert run_etl(hour, hour + HOUR).state == "success"
    hourly = star_snapshot(stack)
    # Rows no source gives: a rebuild drops them (merge keeps users outside its window).
    execute(stack, "INSERT INTO users VALUES (999999, 'Stale', 'User', 'F', 'free')")
    execute(stack, "INSERT INTO artists (artist_id, name) VALUES ('ARSTALE', 'Stale Artist')")
    execute(stack, "INSERT INTO songs (song_id, title, artist_id) VALUES ('SOSTALE', 'Stale Song', 'ARSTALE')")
    counts_before = {table: query(stack, f"SELECT count(*) FROM {table}")[0][0] for table in ("users", "songs", "artists")}

    capfd.readouterr()
    run = run_etl(HOURS[1], HOURS[1] + HOUR, full_refresh=True)
    assert run.state == "success"
    assert star_snapshot(stack) == hourly
    assert_matches_model(stack, dataset, [WINDOW])
    log = capfd.readouterr().out
    for table, rows in counts_before.items():
        # A full refresh ran: every row was deleted and the table rebuilt (a merge would update none).
        counts = task_result(run, "load_dimensions")[table]
        assert counts["DELETE"] == rows and counts["INSERT"] == rows - 1, (table, counts)
        # The task log groups the statements and sums them up per table.
        assert f"::group::Loading {table} (full refresh)" in log
        assert (f"{table} (full refresh) [{HOURS[1].isoformat()}, {(HOURS[1] + HOUR).isoformat()}): "
                f"{rows:,} deleted, {rows - 1:,} inserted, 0 updated") in log


def test_concurrent_runs_give_the_same_warehouse(dataset, stack):
    assert run_etl(*WINDOW).state == "success"
    expected = star_snapshot(stack)
    reset_warehouse(stack)
    # Create the tables first so concurrent runs race on loads, not on DDL.
    assert run_etl("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z").state == "success"

    code = (
        "import sys; from support.pipeline import run_etl; "
        "sys.exit(0 if run_etl(sys.argv[1], sys.argv[2]).state == 'success' else 1)"
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
    assert run_etl(*WINDOW).state == "success"
    ledger_before = dict(query(stack, "SELECT source_key, run_id FROM stage_load_ledger"))

    assert run_etl(*WINDOW).state == "success"
    assert dict(query(stack, "SELECT source_key, run_id FROM stage_load_ledger")) == ledger_before, \
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
        assert run_etl(*WINDOW).state == "success"
        assert_matches_model(stack, changed, [WINDOW])
        staged = query(stack, "SELECT count(*) FROM staging_events WHERE source_key = %s",
                       ("log_data/2018/11/2018-11-01-events.json",))[0][0]
        assert staged == len(events)
        ledger_after = dict(query(stack, "SELECT source_key, run_id FROM stage_load_ledger"))
        changed_keys = {key for key in ledger_after if ledger_after[key] != ledger_before[key]}
        assert changed_keys == {"log_data/2018/11/2018-11-01-events.json"}
    finally:
        replace_bucket_contents(stack, dataset)


def test_changed_song_files_replace_their_songs_and_artists(dataset, stack, tmp_path):
    assert run_etl(*WINDOW).state == "success"
    changed = tmp_path / "changed"
    shutil.copytree(dataset, changed)
    files = {path: json.loads(path.read_text(encoding="utf-8")) for path in sorted((changed / "song_data").rglob("*.json"))}
    per_artist = Counter(song["artist_id"] for song in files.values())
    per_song = Counter(song["song_id"] for song in files.values())
    played = {(e["song"], e["artist"], e["length"]) for e in read_events(dataset)
              if e["page"] == "NextSong" and WINDOW[0] <= event_time(e["ts"]) < WINDOW[1]}
    # Songs alone in their file and the only song of their artist, so each row has one source;
    # the edited one is played in the window, so its plays lose their match.
    single = [path for path, song in files.items() if per_artist[song["artist_id"]] == 1 and per_song[song["song_id"]] == 1]
    edited_path = next(path for path in single
                       if (files[path]["title"], files[path]["artist_name"], files[path]["duration"]) in played)
    removed_path = next(path for path in single if path != edited_path)
    old, removed = files[edited_path], files[removed_path]
    new = {**old, "title": old["title"] + " (Remastered)", "duration": old["duration"] + 1.5,
           "artist_name": old["artist_name"] + " & Co"}
    replacement = {**removed, "song_id": "SONEWNEWNEWNEWNEW1", "artist_id": "ARNEWNEWNEWNEWNEW1", "title": "Brand New"}
    edited_path.write_text(json.dumps(new, ensure_ascii=False), encoding="utf-8")
    removed_path.write_text(json.dumps(replacement, ensure_ascii=False), encoding="utf-8")
    plays_of_old = "SELECT count(*) FROM songplays WHERE song_id = %s"
    assert query(stack, plays_of_old, (old["song_id"],))[0][0] > 0
    replace_bucket_contents(stack, changed)
    try:
        assert run_etl(*WINDOW).state == "success"
        # The window's plays no longer match the edited song (its title and duration changed).
        assert query(stack, plays_of_old, (old["song_id"],)) == [(0,)]
        assert query(stack, "SELECT title, artist_id, year, duration FROM songs WHERE song_id = %s", (old["song_id"],)) == [
            (new["title"], new["artist_id"], new["year"], new["duration"])]
        assert query(stack, "SELECT name FROM artists WHERE artist_id = %s", (old["artist_id"],)) == [(new["artist_name"],)]
        # The song and artist the changed file no longer lists are gone; its new ones are in.
        assert query(stack, "SELECT count(*) FROM songs WHERE song_id = %s", (removed["song_id"],)) == [(0,)]
        assert query(stack, "SELECT count(*) FROM artists WHERE artist_id = %s", (removed["artist_id"],)) == [(0,)]
        assert query(stack, "SELECT title FROM songs WHERE song_id = 'SONEWNEWNEWNEWNEW1'") == [("Brand New",)]
        # Exactly the songs and artists the song files list now: none left from the replaced versions.
        for table, key in (("songs", "song_id"), ("artists", "artist_id")):
            listed = {song[key] for song in read_songs(changed)}
            assert {value for (value,) in query(stack, f"SELECT {key} FROM {table}")} == listed, f"{table}: stale rows"
        assert_matches_model(stack, changed, [WINDOW])
    finally:
        replace_bucket_contents(stack, dataset)


def test_empty_hours_succeed_with_zero_rows(dataset, stack, capfd):
    # An hour with no file at all, long after the sample data.
    assert run_etl("2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z").state == "success"
    # The logs say so: no day file to stage, no rows for the fact.
    log = capfd.readouterr().out
    assert "no object s3://" in log and "2026-11-25-events.json; nothing to stage from it" in log
    assert "songplays: no rows in this window (an empty hour is fine)" in log
    # A scheduled run (no params): the data interval is the window.
    assert run_scheduled(datetime(2027, 1, 1, 5, tzinfo=timezone.utc)).state == "success"
    assert query(stack, "SELECT count(*) FROM songplays")[0][0] == 0
    assert query(stack, "SELECT count(*) FROM users")[0][0] == 0
    # The songs are staged whatever the hour.
    assert query(stack, "SELECT count(*) FROM songs")[0][0] > 0


@pytest.mark.parametrize(("conf", "reason"), [
    ({"start": "2018-11-01T05:00:00Z", "end": "2018-11-01T04:00:00Z"}, "must be before end"),
    ({"start": "2018-11-01T05:00:00Z", "end": "2018-11-01T05:00:00Z"}, "must be before end"),
    ({"start": "2018-11-01T05:00:00Z"}, "give both start and end"),
    ({"end": "2018-11-01T05:00:00Z"}, "give both start and end"),
])
def test_invalid_window_fails_at_once_without_retries(dataset, stack, capfd, conf, reason):
    stage_events = etl_dag().get_task("stage_events")
    saved = stage_events.retries, stage_events.retry_delay
    # Give the first task that renders the window retries: a bad window must not use them.
    stage_events.retries, stage_events.retry_delay = 2, timedelta(seconds=1)
    try:
        run = run_dag(conf)
    finally:
        stage_events.retries, stage_events.retry_delay = saved
    assert run.state == "failed"
    instances = {ti.task_id: ti for ti in run.get_task_instances()}
    assert instances["stage_events"].state == "failed"
    assert instances["stage_events"].try_number == 1
    assert instances["load_songplays_fact"].state == "upstream_failed"
    # The task log names the cause.
    assert re.search(rf"WindowError: [^\n]*{reason}", capfd.readouterr().out)
