"""Real files as Redshift's COPY accepts them, through the DAG, against the model; and the
Redshift branch of every load template run on the same staged rows.

The same generated records are written in the layouts real producers use: song files
pretty-printed over several lines (as Redshift's COPY documentation writes JSON), several
events per log line, CR LF line endings. Some events are staged twice with different
values, and some song_ids and artists are described differently by two files, so every
de-duplication choice is exercised.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import psycopg
import pytest

from support.model import event_time, expected_warehouse, read_events, read_json_values, read_songs
from support.pipeline import assert_matches_model as matches_model
from support.pipeline import STAR_TABLES, query, replace_bucket_contents, reset_warehouse, run_etl
from scripts.sample_data import generate

HOUR = timedelta(hours=1)
HOURS = [datetime(2018, 11, 1, 22) + i * HOUR for i in range(3)]  # across a day boundary
WINDOW = (HOURS[0], HOURS[-1] + HOUR)
LAYOUTS = {
    "one record per line": {},
    "pretty-printed songs, 3 events per line, CR LF": {"pretty_songs": True, "events_per_line": 3, "crlf": True},
}
# Tables the Redshift branch reads, and which the PostgreSQL run leaves staged.
STAGED_TABLES = ("staging_events", "staging_songs")
# What the loads read and write besides: the hours loaded, and the queues staging fills.
LOAD_STATE_TABLES = ("loaded_hours", "stale_hours", "stale_users", "stale_song_matches")


def _dataset(root, layout: dict):
    generate(root, seed=11, songs=60, start_day=date(2018, 11, 1), days=2, events_per_day=500, users=15,
             match_share=0.6, **layout)
    _add_disagreements(root, layout)
    return root


def _add_disagreements(root, layout: dict) -> None:
    """Events staged twice with other values, and songs/artists two files disagree about,
    written in the dataset's own layout."""
    newline = "\r\n" if layout.get("crlf") else "\n"
    indent = 4 if layout.get("pretty_songs") else None
    songs = read_songs(root)
    extra = root / "song_data" / "Z" / "Z" / "Z"
    extra.mkdir(parents=True)
    changed = [
        {**songs[1], "title": "A Different Title", "year": 1999},  # song_id in two files
        {**songs[0], "song_id": "SOZZZZZZZZZZZZZZZ1", "artist_location": "Elsewhere"},  # artist twice
        {**songs[0], "song_id": "SOZZZZZZZZZZZZZZZ1", "artist_location": "Abroad"},  # and the same song too
    ]
    for number, song in enumerate(changed):
        text = json.dumps(song, ensure_ascii=False, indent=indent).replace("\n", newline)
        (extra / f"TRZZZZZZZZZZZZZZZ{number}.json").write_bytes(text.encode())
    day_file = root / "log_data" / "2018" / "11" / "2018-11-01-events.json"
    plays = [e for e in read_json_values(day_file) if e["page"] == "NextSong" and e["userId"]]
    again = [{**event, "location": "Z" + str(event["location"]), "level": "paid"} for event in plays[-40::4]]
    with day_file.open("ab") as out:
        out.write("".join(json.dumps(event, ensure_ascii=False) + newline for event in again).encode())


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, airflow_db):
    return {name: _dataset(tmp_path_factory.mktemp("layout"), layout) for name, layout in LAYOUTS.items()}


@pytest.fixture
def stack(airflow_db):
    reset_warehouse(airflow_db)
    return airflow_db


def assert_matches_model(stack, data_dir):
    return matches_model(stack, expected_warehouse(read_events(data_dir), read_songs(data_dir), [WINDOW]))


def test_real_layouts_stage_and_load_like_one_record_per_line(datasets, stack):
    """Through the DAG, under a DateStyle that changes how timestamps print."""
    database = query(stack, "SELECT current_database()")[0][0]
    snapshots = {}
    for name, data_dir in datasets.items():
        reset_warehouse(stack)
        replace_bucket_contents(stack, data_dir)
        with psycopg.connect(stack.warehouse_conninfo, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database}" SET DateStyle = \'SQL, DMY\'')
        try:
            for hour in HOURS:
                assert run_etl(hour, hour + HOUR).state == "success", name
        finally:
            with psycopg.connect(stack.warehouse_conninfo, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{database}" RESET DateStyle')
        snapshots[name] = assert_matches_model(stack, data_dir)
        # Every record of every file was staged: none rejected, the ledger's counts add up.
        assert query(stack, "SELECT count(*) FROM stage_rejects") == [(0,)], name
        staged = query(stack, "SELECT sum(lines_read), sum(rows_staged) FROM stage_load_ledger "
                              "WHERE table_name = 'staging_events'")
        events = len(read_events(data_dir))
        assert staged == [(events, events)], name
    one_line, other = snapshots.values()
    assert other == one_line
    assert len(one_line["songplays"]) > 20 and any(row[4] for row in one_line["songplays"])


def _render_redshift_loads() -> dict[str, list[str]]:
    from support import render
    from sparkify.warehouse import split_statements

    return {sql_file.name: split_statements(sql_file.sql) for sql_file in render.load_sql("redshift")}


def _redshift_branch_warehouse(stack, mode: str, order: str) -> dict[str, list[tuple]]:
    """Run the Redshift branch of every load template, hour by hour in the DAG's order, in a
    schema of its own over a copy of the staged rows, and return its star schema.

    The rows are copied in ``order`` and without source_key/source_line, which Redshift's
    COPY leaves empty. The DDL is PostgreSQL's (``LIKE`` the public tables): Redshift's
    CREATE TABLE adds DISTSTYLE/SORTKEY, which PostgreSQL can't parse. Every load statement
    runs as rendered for Redshift.
    """
    loads = _render_redshift_loads()
    dimension = {table: loads.get(f"load/{table}.sql [{mode}]") or loads[f"load/{table}.sql"]
                 for table in ("songs", "artists", "users", "time")}
    ordering = {"as staged": "ctid", "reversed": "ctid DESC", "shuffled": "md5(ctid::text)"}[order]
    with psycopg.connect(stack.warehouse_conninfo) as conn:
        conn.execute("DROP SCHEMA IF EXISTS redshift_branch CASCADE")
        conn.execute("CREATE SCHEMA redshift_branch")
        for table in (*STAR_TABLES, *LOAD_STATE_TABLES, *STAGED_TABLES):
            conn.execute(f"CREATE TABLE redshift_branch.{table} (LIKE public.{table} INCLUDING ALL)")
        for table in STAGED_TABLES:
            conn.execute(f"INSERT INTO redshift_branch.{table} SELECT * FROM public.{table} ORDER BY {ordering}")
            conn.execute(f"UPDATE redshift_branch.{table} SET source_key = NULL, source_line = NULL")
        conn.execute("SET search_path TO redshift_branch")
        for hour in HOURS:
            parameters = {"window_start": hour, "window_end": hour + HOUR, "run_id": f"redshift-branch-{hour:%H}",
                          "hour_start": hour, "loaded_at": datetime(2026, 1, 1)}
            for statements in (dimension["songs"], dimension["artists"], loads["load/songplays.sql"],
                               loads["load/loaded_hours.sql"], dimension["users"], dimension["time"]):
                for statement in statements:
                    conn.execute(statement, parameters)
        snapshot = {table: conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
                    for table, key in STAR_TABLES.items()}
        conn.execute("DROP SCHEMA redshift_branch CASCADE")
    return snapshot


@pytest.mark.parametrize("mode", ["merge", "truncate-insert"])
def test_redshift_branch_of_every_load_gives_the_same_warehouse(datasets, stack, mode):
    data_dir = datasets["pretty-printed songs, 3 events per line, CR LF"]
    replace_bucket_contents(stack, data_dir)
    for hour in HOURS:
        assert run_etl(hour, hour + HOUR, full_refresh=mode == "truncate-insert").state == "success"
    postgres_branch = assert_matches_model(stack, data_dir)
    for order in ("as staged", "reversed", "shuffled"):
        assert _redshift_branch_warehouse(stack, mode, order) == postgres_branch, order


def test_the_data_makes_every_choice(datasets):
    """The disagreements above are really there, so the tests above can fail."""
    data_dir = datasets["one record per line"]
    events = read_events(data_dir)
    identities = [(e["userId"], e["sessionId"], e["itemInSession"], e["ts"]) for e in events
                  if e["page"] == "NextSong" and WINDOW[0] <= event_time(e["ts"]) < WINDOW[1]]
    assert len(identities) - len(set(identities)) >= 5  # inside the window the tests load
    songs = read_songs(data_dir)
    assert len(songs) - len({s["song_id"] for s in songs}) == 2
