"""A failing check fails its task and says what failed: the check, its SQL, the expected and
actual values, and a few offending rows.

One window is loaded once and kept as a snapshot. Each case restores the snapshot, breaks one
thing the way a bad load (or Redshift, which enforces no keys) could, and runs only the
quality checks on it: exactly the task holding the broken check fails, and its log explains
it. The expected counts and rows come from what the case broke and from the input JSON
(tests/support/model.py), never from the SQL under test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import psycopg
import pytest

from support.model import event_time, expected_warehouse, read_events, read_songs
from support.pipeline import replace_bucket_contents, reset_warehouse, run_dag, run_etl
from scripts.sample_data import generate

WINDOW = ("2018-11-01T10:00:00Z", "2018-11-01T12:00:00Z")
WINDOW_BOUNDS = (datetime(2018, 11, 1, 10), datetime(2018, 11, 1, 12))
CHECKS_ONLY = r"(?!quality_checks$).*"  # every other task is marked successful unrun
CHECK_TASK = "quality_checks"
KEYS = {"songplays": "songplay_id", "time": "start_time", "users": "user_id", "songs": "song_id", "artists": "artist_id"}


@dataclass
class Loaded:
    stack: object
    events: list[dict]  # the input JSON's events
    model: object  # tests/support/model.py's warehouse for WINDOW


@pytest.fixture(scope="module")
def loaded(airflow_db, tmp_path_factory):
    """WINDOW loaded once by a full run, snapshotted into the schema ``pristine``."""
    data = tmp_path_factory.mktemp("quality") / "data"
    generate(data, seed=5, songs=20, days=1, events_per_day=300, users=8)
    replace_bucket_contents(airflow_db, data)
    reset_warehouse(airflow_db)
    assert run_etl(*WINDOW).state == "success"
    with psycopg.connect(airflow_db.warehouse_conninfo, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS pristine CASCADE")
        conn.execute("CREATE SCHEMA pristine")
        for table in _tables(conn, "public"):
            conn.execute(f'CREATE TABLE pristine."{table}" (LIKE public."{table}" INCLUDING ALL)')
            conn.execute(f'INSERT INTO pristine."{table}" SELECT * FROM public."{table}"')
    events = read_events(data)
    yield Loaded(airflow_db, events, expected_warehouse(events, read_songs(data), [WINDOW_BOUNDS]))
    with psycopg.connect(airflow_db.warehouse_conninfo, autocommit=True) as conn:
        conn.execute("DROP SCHEMA pristine CASCADE")


def _tables(conn, schema: str) -> list[str]:
    return [name for (name,) in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name", (schema,))]


@pytest.fixture
def warehouse(loaded):
    """The loaded window, restored from the snapshot (keys and constraints included)."""
    with psycopg.connect(loaded.stack.warehouse_conninfo, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        for table in _tables(conn, "pristine"):
            conn.execute(f'CREATE TABLE public."{table}" (LIKE pristine."{table}" INCLUDING ALL)')
            conn.execute(f'INSERT INTO public."{table}" SELECT * FROM pristine."{table}"')
    return loaded


def run_checks():
    """Only the quality checks of a run over WINDOW, on the warehouse as it is now."""
    run = run_dag({"start": WINDOW[0], "end": WINDOW[1]}, mark_success_pattern=CHECKS_ONLY)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def explanation(log: str, name: str) -> str:
    """The log's explanation of one failing check: its header, SQL and offending rows."""
    assert f"FAILED {name}" in log, f"no explanation of {name} in the log"
    block = log[log.index(f"FAILED {name}"):]
    return re.split(r"\n(?=FAILED |\d{4}-\d\d-\d\dT)", block, maxsplit=1)[0]


# --------------------------------------------------------------------------- the cases


@dataclass
class Broken:
    """What a case broke: the task and check that must fail, the values the log must give, a
    fragment of the check's SQL, and what must show among the offending rows."""

    task: str
    check: str
    expected: object
    actual: object
    sql: str
    rows: tuple[str, ...]
    # A changed songplays row also makes its hour differ from what staging gives: the
    # loaded_hours drift check fails with it.
    drifts: bool = False


def _staged_plays(loaded: Loaded) -> list[tuple]:
    """The window's distinct staged plays (user, session, item, time), from the input JSON."""
    start, end = WINDOW_BOUNDS
    return sorted({
        (int(event["userId"]), event["sessionId"], event["itemInSession"], event_time(event["ts"]))
        for event in loaded.events
        if event["page"] == "NextSong" and str(event.get("userId") or "").strip() and start <= event_time(event["ts"]) < end
    }, key=lambda play: (play[3], play))


def null_key(table: str, insert: Callable[[Loaded], tuple[str, tuple]]):
    """A row whose key is NULL, after dropping the key (as Redshift would have let it in)."""
    def breaks(conn, loaded: Loaded) -> Broken:
        key = KEYS[table]
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN {key} DROP NOT NULL")
        sql, row = insert(loaded)
        conn.execute(sql, row)
        return Broken(CHECK_TASK, f"{table}.{key}.null_check", "= 0", 1,
                      f"SUM(CASE WHEN {key} IS NULL THEN 1 ELSE 0 END) AS actual FROM {table}", (repr(row),))
    return breaks


def duplicate_key(table: str, pick: Callable[[Loaded], object]):
    """A second row with an existing key, after dropping the key constraint."""
    def breaks(conn, loaded: Loaded) -> Broken:
        key, value = KEYS[table], pick(loaded)
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        conn.execute(f"INSERT INTO {table} SELECT * FROM {table} WHERE {key} = %s", (value,))
        return Broken(CHECK_TASK, f"{table}.{key}.unique_check", "= 0", 1,
                      f"COUNT({key}) - COUNT(DISTINCT({key})) AS actual FROM {table}", (repr((value, 2)),))
    return breaks


def _one_play(conn, sql: str, params: tuple, play: tuple) -> None:
    """Run ``sql`` on the songplay of one staged play (user, session, item, time): exactly one row."""
    user_id, session_id, _, moment = play
    cursor = conn.execute(f"{sql} WHERE user_id = %s AND session_id = %s AND start_time = %s",
                          (*params, user_id, session_id, moment))
    assert cursor.rowcount == 1


def null_songplay_id(conn, loaded: Loaded) -> Broken:
    # An existing row's key set to NULL: the window keeps its count, so only the key check fails.
    play = _staged_plays(loaded)[0]
    conn.execute("ALTER TABLE songplays DROP CONSTRAINT songplays_pkey")
    conn.execute("ALTER TABLE songplays ALTER COLUMN songplay_id DROP NOT NULL")
    _one_play(conn, "UPDATE songplays SET songplay_id = NULL", (), play)
    return Broken(CHECK_TASK, "songplays.songplay_id.null_check", "= 0", 1,
                  "SUM(CASE WHEN songplay_id IS NULL THEN 1 ELSE 0 END) AS actual FROM songplays",
                  (f"(None, {play[3]!r}, {play[0]},",), drifts=True)


def duplicate_songplay_id(conn, loaded: Loaded) -> Broken:
    # A second play's row takes the first one's id: same count, two rows share one key.
    first, second = _staged_plays(loaded)[:2]
    (first_id,), = conn.execute("SELECT songplay_id FROM songplays WHERE user_id = %s AND session_id = %s "
                                "AND start_time = %s", (first[0], first[1], first[3])).fetchall()
    conn.execute("ALTER TABLE songplays DROP CONSTRAINT songplays_pkey")
    _one_play(conn, "UPDATE songplays SET songplay_id = %s", (first_id,), second)
    return Broken(CHECK_TASK, "songplays.songplay_id.unique_check", "= 0", 1,
                  "COUNT(songplay_id) - COUNT(DISTINCT(songplay_id)) AS actual FROM songplays", (repr((first_id, 2)),),
                  drifts=True)


def orphan(column: str, value, check: str):
    """One songplay pointing at a row its dimension doesn't have."""
    def breaks(conn, loaded: Loaded) -> Broken:
        _one_play(conn, f"UPDATE songplays SET {column} = %s", (value,), _staged_plays(loaded)[0])
        return Broken(CHECK_TASK, f"songplays.{check}", "= 0", 1,
                      f"COUNT(CASE WHEN {column}", (repr(value),), drifts=True)
    return breaks


def orphan_start_time(conn, loaded: Loaded) -> Broken:
    # The time row of one instant deleted: every songplay at that instant is orphaned.
    moment = min(loaded.model.time)
    plays_then = sum(1 for play in loaded.model.songplays if play[0] == moment)
    conn.execute("DELETE FROM time WHERE start_time = %s", (moment,))
    return Broken(CHECK_TASK, "songplays.start_time_in_time", "= 0", plays_then,
                  "start_time IN (SELECT start_time FROM time)", (repr(moment),))


def time_part(part: str, value: int, low: int, high: int):
    def breaks(conn, loaded: Loaded) -> Broken:
        moment = max(loaded.model.time)
        conn.execute(f"UPDATE time SET {part} = %s WHERE start_time = %s", (value, moment))
        return Broken(CHECK_TASK, f"time.{part}_in_range", "= 0", 1,
                      f"{part} BETWEEN {low} AND {high}", (repr(moment),))
    return breaks


def deleted_songplay(conn, loaded: Loaded) -> Broken:
    # One staged play's songplay gone: the window has one row fewer than distinct staged plays.
    plays = _staged_plays(loaded)
    assert len(plays) == len(loaded.model.songplays)  # the model agrees on the window's plays
    gone = plays[len(plays) // 2]
    _one_play(conn, "DELETE FROM songplays", (), gone)
    return Broken(CHECK_TASK, "songplays.matches_staged_plays", f"= {len(plays)}",
                  len(plays) - 1, "SELECT DISTINCT userid, sessionid, iteminsession, ts FROM staging_events", (repr(gone),),
                  drifts=True)


def bad_ledger_row(conn, loaded: Loaded) -> Broken:
    # One object's ledger entry claims a line that was neither staged nor rejected.
    day_file = "log_data/2018/11/2018-11-01-events.json"
    assert conn.execute("UPDATE stage_load_ledger SET lines_read = lines_read + 1 WHERE source_key = %s",
                        (day_file,)).rowcount == 1
    return Broken(CHECK_TASK, "stage_load_ledger.lines_reconcile", "= 0", 1,
                  "lines_read = rows_staged + rows_rejected", (repr(day_file),))


def ledger_lines_unknown(conn, loaded: Loaded) -> Broken:
    # A ledger entry that doesn't say how many lines it read can't show that none was lost.
    day_file = "log_data/2018/11/2018-11-01-events.json"
    assert conn.execute("UPDATE stage_load_ledger SET lines_read = NULL WHERE source_key = %s", (day_file,)).rowcount == 1
    return Broken(CHECK_TASK, "stage_load_ledger.lines_reconcile", "= 0", 1,
                  "lines_read = rows_staged + rows_rejected", (repr(day_file),))


def _first_user(loaded: Loaded) -> int:
    return min(loaded.model.users)


def _first_song(loaded: Loaded) -> str:
    return min(loaded.model.songs)


def _first_artist(loaded: Loaded) -> str:
    return min(loaded.model.artists)


CASES = {
    "songplays-null-key": null_songplay_id,
    "songplays-duplicate-key": duplicate_songplay_id,
    "users-null-key": null_key("users", lambda loaded: (
        "INSERT INTO users VALUES (%s, %s, %s, %s, %s)", (None, "Nul", "Key", "F", "free"))),
    "users-duplicate-key": duplicate_key("users", _first_user),
    "songs-null-key": null_key("songs", lambda loaded: (
        "INSERT INTO songs VALUES (%s, %s, %s, %s, %s)", (None, "No Key", _first_artist(loaded), 2001, 180.5))),
    "songs-duplicate-key": duplicate_key("songs", _first_song),
    "artists-null-key": null_key("artists", lambda loaded: (
        "INSERT INTO artists VALUES (%s, %s, %s, %s, %s)", (None, "No Key", "Nowhere", None, None))),
    "artists-duplicate-key": duplicate_key("artists", _first_artist),
    # A NULL start_time is in no window: the time checks look at such rows in every run.
    "time-null-key": null_key("time", lambda loaded: (
        "INSERT INTO time VALUES (%s, %s, %s, %s, %s, %s, %s)", (None, 1, 2, 3, 4, 2018, 5))),
    "time-duplicate-key": duplicate_key("time", lambda loaded: min(loaded.model.time)),
    "orphan-user_id": orphan("user_id", 424242, "user_in_users"),
    "orphan-song_id": orphan("song_id", "SONOSUCHSONG0000", "song_in_songs"),
    "orphan-artist_id": orphan("artist_id", "ARNOSUCHARTIST00", "artist_in_artists"),
    "orphan-start_time": orphan_start_time,
    "hour-out-of-range": time_part("hour", 24, 0, 23),
    "day-out-of-range": time_part("day", 0, 1, 31),
    "week-out-of-range": time_part("week", 54, 1, 53),
    "month-out-of-range": time_part("month", 13, 1, 12),
    "year-out-of-range": time_part("year", 1969, 1970, 2100),
    "weekday-out-of-range": time_part("weekday", 7, 0, 6),
    "deleted-songplay": deleted_songplay,
    "bad-ledger-row": bad_ledger_row,
    "ledger-lines-unknown": ledger_lines_unknown,
}


@pytest.mark.parametrize("case", CASES)
def test_each_check_fails_its_task_and_explains_itself(warehouse, capfd, case):
    with psycopg.connect(warehouse.stack.warehouse_conninfo, autocommit=True) as conn:
        broken = CASES[case](conn, warehouse)
    capfd.readouterr()

    run, states = run_checks()

    assert run.state == "failed"
    assert {task for task, state in states.items() if state != "success"} == {broken.task}, states
    log = capfd.readouterr().out
    block = explanation(log, broken.check)
    header = block.splitlines()[0]
    assert header.endswith(f"expected {broken.expected}, actual {broken.actual}"), header
    sql = next(line for line in block.splitlines() if line.startswith("  SQL: "))
    assert broken.sql in sql, sql
    for row in broken.rows:
        assert row in block, (row, block)
    # The task's error explains this check alone (and the drift it makes): every other check passed.
    table = broken.check.split(".")[0]
    assert f"1 failing check(s) on {table}:\nFAILED {broken.check}" in log
    failing = set(re.findall(r"failing check\(s\) on (\w+)", log))
    assert failing == {table} | ({"loaded_hours"} if broken.drifts else set()), failing


def test_failing_checks_fail_the_run_and_show_offending_rows(warehouse, capfd):
    """A full run: the loads don't repair a bad user they never wrote, and the checks catch it."""
    with psycopg.connect(warehouse.stack.warehouse_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO users VALUES (424242, 'Bad', 'Row', 'X', 'gold')")
    capfd.readouterr()

    run = run_etl(*WINDOW)

    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert {task for task, state in states.items() if state != "success"} == {CHECK_TASK}, states
    log = capfd.readouterr().out
    assert set(re.findall(r"(\d+) failing check\(s\) on (\w+)", log)) == {("2", "users")}
    for check, condition in (("level_allowed", "level IN ('free', 'paid')"),
                             ("gender_allowed", "gender IS NULL OR gender IN ('M', 'F')")):
        block = explanation(log, f"users.{check}")
        assert block.splitlines()[0].endswith("expected = 0, actual 1")
        assert condition in block and "(424242, 'Bad', 'Row', 'X', 'gold')" in block


def test_checks_pass_and_report_on_correct_data(warehouse, capfd):
    capfd.readouterr()
    run, states = run_checks()
    assert run.state == "success"
    assert set(states.values()) == {"success"}
    log = capfd.readouterr().out
    for check in ("user_in_users", "matches_staged_plays", "year_in_range", "lines_reconcile", "songplay_id.unique_check"):
        assert check in log
    assert "FAIL" not in log
