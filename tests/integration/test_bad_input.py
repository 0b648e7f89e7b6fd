"""Bad input loses nothing: every record is staged or rejected with file, line and reason.
Configuration problems (missing bucket, bad credentials, missing or mismatched JSONPaths)
fail at once, without retries."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from support.ports import free_port
from support.pipeline import (
    query, replace_bucket_contents, reset_warehouse, run_etl, s3_client, stage_operator, window_context,
)
from scripts.sample_data import generate

EVENTS_KEY = "log_data/2018/11/2018-11-01-events.json"
BASE_TS = 1541030400000  # 2018-11-01T00:00:00Z


def event(**fields):
    record = {
        "artist": None, "auth": "Logged In", "firstName": "Zoë", "gender": "F", "itemInSession": 0,
        "lastName": "Öst", "length": None, "level": "free", "location": "Oslo", "method": "GET", "page": "Home",
        "registration": 1540919166796.0, "sessionId": 1, "song": None, "status": 200, "ts": BASE_TS + 1000,
        "userAgent": "Mozilla/5.0", "userId": "5",
    }
    record.update(fields)
    return json.dumps(record, ensure_ascii=False).encode()


PLAY = event(page="NextSong", artist="Björk", song="Jóga", length=305.1, itemInSession=1)
# (line bytes, expected outcome: None = staged, else the reject's field and a reason fragment)
EVENT_LINES = [
    (PLAY, None),
    (b'{"artist": null, "auth": "Logged In", "ts": 154103', ("", "malformed JSON")),
    (event(ts="2018-11-01 00:00:00", itemInSession=2), ("ts", "epoch milliseconds")),
    (event(length="long", itemInSession=3), ("length", "not a number")),
    (event(ts=None, itemInSession=4), ("ts", "required")),
    (event(itemInSession=5, shoeSize=44, nested={"a": [1]}), None),
    (event(itemInSession=6).replace(b"Mozilla", b"Moz\xff\xfella"), ("", "UTF-8")),
    (event(itemInSession=7, userAgent="x" * (10 * 1024 * 1024)), ("", "JSON limit")),
    (PLAY, None),  # a duplicate event: staged again, counted once in songplays
    (b"", "blank"),
    (event(itemInSession=8, userId="6", page="Settings"), None),
]


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory, airflow_db):
    data_dir = tmp_path_factory.mktemp("bad")
    generate(data_dir, seed=3, songs=5, days=1, events_per_day=0, users=2)
    (data_dir / "log_data" / "2018" / "11").mkdir(parents=True, exist_ok=True)
    (data_dir / EVENTS_KEY).write_bytes(b"\n".join(line for line, _ in EVENT_LINES) + b"\n")
    song = json.loads(min((data_dir / "song_data").rglob("TR*.json")).read_bytes())
    bad_songs = data_dir / "song_data" / "Z" / "Z" / "Z"
    bad_songs.mkdir(parents=True)
    (bad_songs / "TRZZZBROKEN.json").write_bytes(b'{"song_id": "SOBROKEN", "title": ')
    (bad_songs / "TRZZZEMPTY.json").write_bytes(b"")
    # Blank and whitespace-only lines around a good record and a bad one, CRLF line ends.
    song.update(song_id="SOBLANKS", title="Blanks")
    (bad_songs / "TRZZZBLANKS.json").write_bytes(
        b"\n  \n" + json.dumps(song).encode() + b"\r\n\t\r\n\n" + b'{"song_id": 7, "year": "x"}' + b"\n\n")
    replace_bucket_contents(airflow_db, data_dir)
    return data_dir


@pytest.fixture
def stack(airflow_db, bad_dataset):
    reset_warehouse(airflow_db)
    return airflow_db


def non_blank_lines(path: Path) -> int:
    """A file's records: its newline-separated lines that are not blank (blank lines hold none)."""
    return sum(1 for line in path.read_bytes().split(b"\n") if line.strip())


def test_every_record_is_staged_or_rejected_with_its_line_and_reason(stack, bad_dataset):
    assert run_etl("2018-11-01T00:00:00Z", "2018-11-01T01:00:00Z").state == "success"

    staged = query(stack, "SELECT source_line FROM staging_events WHERE source_key = %s", (EVENTS_KEY,))
    staged_lines = {line for (line,) in staged}
    rejects = {line: (field or "", reason) for line, field, reason in query(
        stack, "SELECT source_line, field, reason FROM stage_rejects WHERE source_key = %s", (EVENTS_KEY,))}
    for number, (_, outcome) in enumerate(EVENT_LINES, start=1):
        if outcome is None:
            assert number in staged_lines, f"line {number} was not staged"
        elif outcome == "blank":
            assert number not in staged_lines and number not in rejects
        else:
            field, reason = outcome
            assert number in rejects, f"line {number} was not rejected"
            assert rejects[number][0] == field and reason in rejects[number][1], (number, rejects[number])
    records = sum(1 for line, _ in EVENT_LINES if line)
    assert len(staged_lines) + len(rejects) == records

    # The ledger reconciles: lines read = rows staged + rows rejected, per object.
    for key, lines_read, staged, rejected in query(
            stack, "SELECT source_key, lines_read, rows_staged, rows_rejected FROM stage_load_ledger"):
        assert lines_read == staged + rejected, key
    ledger = dict((key, (lines, staged, rejected)) for key, lines, staged, rejected in query(
        stack, "SELECT source_key, lines_read, rows_staged, rows_rejected FROM stage_load_ledger"))
    assert ledger[EVENTS_KEY] == (records, len(staged_lines), len(rejects))
    assert ledger["song_data/Z/Z/Z/TRZZZEMPTY.json"] == (0, 0, 0)
    assert ledger["song_data/Z/Z/Z/TRZZZBROKEN.json"] == (1, 0, 1)
    # Lines read are the records each file holds, counted here from the file itself: an empty
    # file, blank lines, a huge line and bad bytes included.
    assert ledger.keys() == {p.relative_to(bad_dataset).as_posix() for p in bad_dataset.rglob("*_data/**/*.json")}
    assert {key: lines for key, (lines, _, _) in ledger.items()} == {
        key: non_blank_lines(bad_dataset / key) for key in ledger}
    assert ledger["song_data/Z/Z/Z/TRZZZBLANKS.json"] == (2, 1, 1)

    # The raw text is kept (truncated) and the run is recorded.
    raw, run_id = query(stack, "SELECT raw_text, run_id FROM stage_rejects WHERE source_line = 8")[0]
    assert raw.startswith('{"artist"') and len(raw) <= 2000 and run_id.startswith("manual__")
    # Extra fields are ignored; the duplicate play is one songplay.
    assert query(stack, "SELECT count(*) FROM songplays")[0][0] == 1
    assert query(stack, "SELECT user_id FROM users ORDER BY user_id") == [(5,), (6,)]


def test_rejects_beyond_max_errors_fail_naming_file_line_and_reason(stack):
    # Through Airflow: the run fails (and creates the tables on the way).
    assert run_etl("2018-11-01T00:00:00Z", "2018-11-01T01:00:00Z", max_errors=2).state == "failed"
    window = ("2018-11-01T00:00:00Z", "2018-11-01T01:00:00Z")
    with pytest.raises(AirflowFailException) as failure:
        stage_operator("stage_events", max_errors=2).execute(window_context(*window, run_id="max-errors-test"))
    message = str(failure.value)
    assert EVENTS_KEY in message and "line 4" in message and "length" in message and "max_errors=2" in message
    # Nothing from the failing object is half-staged.
    assert query(stack, "SELECT count(*) FROM staging_events")[0][0] == 0
    # ...but its rejects up to the failing one are kept, once (the failed Airflow run's are replaced).
    rejects_sql = "SELECT source_line, field, reason, run_id FROM stage_rejects WHERE source_key = %s ORDER BY source_line"
    expected = [(number, *outcome) for number, (_, outcome) in enumerate(EVENT_LINES, start=1)
                if outcome not in (None, "blank")]
    kept = query(stack, rejects_sql, (EVENTS_KEY,))
    assert [line for line, *_ in kept] == [number for number, *_ in expected[:3]] == [2, 3, 4]
    for (line, field, reason, run_id), (_, want_field, want_reason) in zip(kept, expected):
        assert (field or "") == want_field and want_reason in reason and run_id == "max-errors-test", line

    # A later run allowing more rejects stages the object; its rejects replace the kept ones.
    stage_operator("stage_events", max_errors=10).execute(window_context(*window, run_id="rerun"))
    after = query(stack, rejects_sql, (EVENTS_KEY,))
    assert [(line, field or "", run_id) for line, field, _, run_id in after] == [
        (number, field, "rerun") for number, field, _ in expected]
    assert all(want in reason for (_, _, reason, _), (_, _, want) in zip(after, expected))


def test_configuration_problems_fail_without_retry(stack, airflow_db):
    run_etl("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z")  # creates the tables
    window = ("2018-11-01T00:00:00Z", "2018-11-01T01:00:00Z")

    with pytest.raises(AirflowFailException, match="bucket 'no-such-bucket' does not exist"):
        stage_operator("stage_events", s3_bucket="no-such-bucket").execute(window_context(*window))

    missing = f"s3://{airflow_db.bucket}/missing_json_path.json"
    with pytest.raises(AirflowFailException, match="JSONPaths file .* does not exist"):
        stage_operator("stage_events", json_format=missing).execute(window_context(*window))

    s3_client(airflow_db).put_object(Bucket=airflow_db.bucket, Key="short_json_path.json",
                                     Body=json.dumps({"jsonpaths": ["$['artist']", "$['ts']"]}).encode())
    short = f"s3://{airflow_db.bucket}/short_json_path.json"
    with pytest.raises(AirflowFailException, match="2 paths but the table has 18 data columns"):
        stage_operator("stage_events", json_format=short).execute(window_context(*window))

    with pytest.raises(AirflowFailException, match="not a plain lower-case SQL identifier"):
        stage_operator("stage_events", table='staging_events"; DROP TABLE users; --').execute(window_context(*window))


def test_bad_credentials_fail_without_retry(stack, monkeypatch):
    """An S3 endpoint that checks signatures (moto with authentication on) refuses unknown keys."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        connection = json.loads(os.environ["AIRFLOW_CONN_SPARKIFY_AWS"])
        connection["login"], connection["password"] = "AKIAUNKNOWNKEY000000", "not-a-real-secret"
        connection["extra"]["endpoint_url"] = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("AIRFLOW_CONN_SPARKIFY_AWS", json.dumps(connection))
        with pytest.raises(AirflowFailException, match="has no access to it"):
            stage_operator("stage_songs").execute({"run_id": "t"})
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_transient_s3_error_is_retried_not_failed(stack, monkeypatch):
    """An S3 endpoint answering 503 (a real HTTP server) is not a missing bucket: the error
    propagates as is, so Airflow retries the task."""
    from botocore.exceptions import ClientError

    class Unavailable(BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connection = json.loads(os.environ["AIRFLOW_CONN_SPARKIFY_AWS"])
        connection["extra"]["endpoint_url"] = f"http://127.0.0.1:{server.server_address[1]}"
        connection["extra"]["config_kwargs"] = {"retries": {"mode": "standard", "max_attempts": 1}}
        monkeypatch.setenv("AIRFLOW_CONN_SPARKIFY_AWS", json.dumps(connection))
        with pytest.raises(ClientError) as raised:
            stage_operator("stage_songs").execute({"run_id": "t"})
        assert not isinstance(raised.value, AirflowFailException)
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        server.shutdown()
        server.server_close()


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")
