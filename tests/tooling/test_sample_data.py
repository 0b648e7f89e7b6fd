"""Tests for scripts/sample_data.py: the files are read back with `json` and
every expectation is computed here, independently of the generator."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tracemalloc
from collections import Counter, defaultdict
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from scripts.sample_data import generate
from support import REPO

EVENT_KEYS = [
    "artist", "auth", "firstName", "gender", "itemInSession", "lastName",
    "length", "level", "location", "method", "page", "registration",
    "sessionId", "song", "status", "ts", "userAgent", "userId",
]
SONG_KEYS = [
    "num_songs", "artist_id", "artist_latitude", "artist_longitude",
    "artist_location", "artist_name", "song_id", "title", "duration", "year",
]
REQUIRED_PAGES = {"NextSong", "Home", "Login", "Logout", "Settings", "Upgrade",
                  "Downgrade", "Help", "About", "Error"}
LOGGED_OUT_PAGES = {"Home", "Login", "About", "Help"}
TRACK_FILE = re.compile(r"^song_data/([A-Z0-9])/([A-Z0-9])/([A-Z0-9])/(TR[A-Z0-9]{16})\.json$")
LOG_FILE = re.compile(r"^log_data/(\d{4})/(\d{2})/(\d{4}-\d{2}-\d{2})-events\.json$")
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
DEFAULTS = dict(seed=42, songs=300, start_day=date(2018, 11, 1), days=3,
                events_per_day=3000, match_share=0.6, users=60)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_songs(root: Path) -> list[tuple[str, str, dict]]:
    """(relative path, raw text, parsed object) for every song file."""
    out = []
    for path in sorted((root / "song_data").rglob("*")):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            out.append((path.relative_to(root).as_posix(), text, json.loads(text)))
    return out


def log_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "log_data").rglob("*") if p.is_file())


def read_events(root: Path) -> list[tuple[str, dict]]:
    """(file day "YYYY-MM-DD", event) for every line, in file then line order."""
    out = []
    for path in log_files(root):
        day = path.name[:10]
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                out.append((day, json.loads(line)))
    return out


def utc(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)


def song_key(title, artist, duration):
    return (title, artist, duration)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The default dataset: 300 songs, 3 days x 3000 events, 60 users."""
    root = tmp_path_factory.mktemp("sparkify")
    counts = generate(root, **DEFAULTS)
    return root, counts, read_songs(root), read_events(root)


# --- layout and schema ------------------------------------------------------

def test_counts_and_file_set(dataset):
    root, counts, songs, events = dataset
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    song_files = [f for f in files if f.startswith("song_data/")]
    logs = [f for f in files if f.startswith("log_data/")]
    assert len(song_files) == 300
    assert logs == [f"log_data/2018/11/2018-11-0{d}-events.json" for d in (1, 2, 3)]
    assert set(files) == set(song_files) | set(logs) | {"log_json_path.json"}
    assert len(events) == 3 * 3000
    assert counts["songs"] == 300
    assert counts["events"] == 9000
    assert counts["files"] == len(files) == 304


def test_song_files_layout_and_schema(dataset):
    _, _, songs, _ = dataset
    song_ids, artists = set(), {}
    for rel, text, song in songs:
        match = TRACK_FILE.match(rel)
        assert match, rel
        track = match.group(4)
        # Folders are the 3rd, 4th and 5th characters of the track id.
        assert match.group(1, 2, 3) == (track[2], track[3], track[4])
        assert "\n" not in text.strip()  # one object on a single line
        assert list(song) == SONG_KEYS
        assert song["num_songs"] == 1
        assert re.fullmatch(r"AR[A-Z0-9]{16}", song["artist_id"])
        assert re.fullmatch(r"SO[A-Z0-9]{16}", song["song_id"])
        assert isinstance(song["duration"], float) and song["duration"] > 0
        assert isinstance(song["year"], int)
        assert song["year"] == 0 or 1900 < song["year"] < 2030
        assert isinstance(song["artist_location"], str)
        assert isinstance(song["artist_name"], str) and song["artist_name"]
        assert isinstance(song["title"], str) and song["title"]
        lat, lon = song["artist_latitude"], song["artist_longitude"]
        assert (lat is None) == (lon is None)
        if lat is not None:
            assert isinstance(lat, float) and -90 <= lat <= 90
            assert isinstance(lon, float) and -180 <= lon <= 180
        song_ids.add(song["song_id"])
        # An artist id always stands for the same artist.
        artist = tuple(song[k] for k in SONG_KEYS[1:6])
        assert artists.setdefault(song["artist_id"], artist) == artist
    assert len(song_ids) == len(songs)


def test_log_files_layout_and_schema(dataset):
    root, _, _, _ = dataset
    for path in log_files(root):
        match = LOG_FILE.match(path.relative_to(root).as_posix())
        assert match
        year, month, day = match.groups()
        assert day.startswith(f"{year}-{month}-")
        raw = path.read_bytes()
        assert raw.endswith(b"\n")
        for line in raw.decode("utf-8").splitlines():
            event = json.loads(line)
            assert list(event) == EVENT_KEYS
            assert isinstance(event["ts"], int)
            assert isinstance(event["userId"], str)
            assert isinstance(event["sessionId"], int)
            assert isinstance(event["itemInSession"], int)
            assert event["registration"] is None or isinstance(event["registration"], float)
            assert event["method"] in ("PUT", "GET")
            assert event["status"] in (200, 307, 404)
            assert event["auth"] in ("Logged In", "Logged Out")
            assert event["level"] in ("free", "paid")
            if event["page"] == "NextSong":
                assert isinstance(event["artist"], str) and event["artist"]
                assert isinstance(event["song"], str) and event["song"]
                assert isinstance(event["length"], float) and event["length"] > 0
            else:
                assert event["artist"] is None
                assert event["song"] is None
                assert event["length"] is None


def test_jsonpaths_file(dataset):
    root, _, _, events = dataset
    paths = json.loads((root / "log_json_path.json").read_text())
    assert list(paths) == ["jsonpaths"]
    assert paths["jsonpaths"] == [f"$['{key}']" for key in EVENT_KEYS]
    assert len(paths["jsonpaths"]) == 18
    # Every path names a key of the events, in the events' key order.
    names = [re.fullmatch(r"\$\['(\w+)'\]", p).group(1) for p in paths["jsonpaths"]]
    assert names == list(events[0][1])


# --- time -------------------------------------------------------------------

def test_events_sit_in_their_utc_day_sorted(dataset):
    _, _, _, events = dataset
    previous = {}
    for day, event in events:
        assert utc(event["ts"]).date().isoformat() == day
        assert event["ts"] >= previous.get(day, 0)  # sorted within a file
        previous[day] = event["ts"]


def test_events_spread_over_all_hours(dataset):
    _, _, _, events = dataset
    per_day = defaultdict(Counter)
    for day, event in events:
        per_day[day][utc(event["ts"]).hour] += 1
    assert len(per_day) == 3
    for day, hours in per_day.items():
        assert set(hours) == set(range(24)), day
        # Roughly uniform: no hour holds a big chunk of the day.
        assert max(hours.values()) < 0.15 * sum(hours.values()), day


def test_registration_before_first_event(dataset):
    _, _, _, events = dataset
    first_ts = min(e["ts"] for _, e in events)
    for _, event in events:
        if event["registration"] is not None:
            assert event["registration"] < first_ts


# --- sessions, pages, users -------------------------------------------------

def test_sessions_count_items_consecutively(dataset):
    _, _, _, events = dataset
    sessions = defaultdict(list)
    for _, event in events:
        sessions[event["sessionId"]].append(event)
    assert len(sessions) > 100
    for session_id, items in sessions.items():
        assert [e["itemInSession"] for e in items] == list(range(len(items))), session_id
        assert [e["ts"] for e in items] == sorted(e["ts"] for e in items)
        # One user per session (logged-out events carry no user id).
        assert len({e["userId"] for e in items} - {""}) <= 1
    lengths = [len(items) for items in sessions.values()]
    assert max(lengths) > 5  # real sessions, not single clicks


def test_pages_and_http(dataset):
    _, _, _, events = dataset
    pages = Counter(e["page"] for _, e in events)
    assert REQUIRED_PAGES <= set(pages)
    assert pages["NextSong"] > 0.7 * len(events)
    for _, event in events:
        page, method, status = event["page"], event["method"], event["status"]
        if page == "NextSong":
            assert (method, status) == ("PUT", 200)
        if page in ("Login", "Logout"):
            assert status == 307
        if status == 404:
            assert page == "Error"
    assert any(e["status"] == 404 for _, e in events)


def test_logged_out_events(dataset):
    _, _, _, events = dataset
    logged_out = [e for _, e in events if e["auth"] == "Logged Out"]
    assert logged_out
    assert {e["page"] for e in logged_out} <= LOGGED_OUT_PAGES
    assert {"Home", "Login"} <= {e["page"] for e in logged_out}
    for event in logged_out:
        assert event["userId"] == ""
        for key in ("firstName", "lastName", "gender", "registration"):
            assert event[key] is None
    for _, event in events:
        if event["auth"] == "Logged In":
            assert event["userId"] != ""
            assert event["firstName"] and event["lastName"]
            assert event["gender"] in ("F", "M")
            assert event["page"] != "Login"
    # After a Login the session goes on logged in.
    sessions = defaultdict(list)
    for _, event in events:
        sessions[event["sessionId"]].append(event)
    for items in sessions.values():
        for before, after in zip(items, items[1:]):
            if before["page"] == "Login":
                assert after["auth"] == "Logged In"
            if before["page"] == "Logout":
                assert after["auth"] == "Logged Out"


def test_user_attributes_are_stable(dataset):
    _, _, _, events = dataset
    seen = {}
    for _, event in events:
        if event["userId"]:
            person = (event["firstName"], event["lastName"], event["gender"],
                      event["registration"], event["location"], event["userAgent"])
            assert seen.setdefault(event["userId"], person) == person
    assert 1 < len(seen) <= 60
    assert all(uid.isdigit() for uid in seen)
    for *_, location, agent in seen.values():
        assert re.search(r", [A-Z]{2}", location)
        assert "Mozilla/5.0" in agent


def test_level_changes_follow_upgrade_or_downgrade(dataset):
    _, _, _, events = dataset
    last = {}  # userId -> last event of that user
    changes = 0
    for _, event in events:
        user = event["userId"]
        if not user:
            continue
        before = last.get(user)
        if before and before["level"] != event["level"]:
            changes += 1
            expected = "Submit Upgrade" if event["level"] == "paid" else "Submit Downgrade"
            assert before["page"] == expected, (user, before, event)
        last[user] = event
    levels = defaultdict(set)
    for _, event in events:
        if event["userId"]:
            levels[event["userId"]].add(event["level"])
    assert changes > 0
    assert any(len(lv) == 2 for lv in levels.values())
    # A submission follows its form page within the same session.
    sessions = defaultdict(list)
    for _, event in events:
        sessions[event["sessionId"]].append(event["page"])
    form = {"Submit Upgrade": "Upgrade", "Submit Downgrade": "Downgrade"}
    submissions = 0
    for pages in sessions.values():
        for before, page in zip(pages, pages[1:]):
            if page in form:
                submissions += 1
                assert before == form[page]
    assert submissions >= changes


# --- content ----------------------------------------------------------------

def test_unicode_names_and_titles(dataset):
    _, _, songs, events = dataset
    titles = [s["title"] for _, _, s in songs]
    artists = [s["artist_name"] for _, _, s in songs]
    first = [e["firstName"] for _, e in events if e["firstName"]]
    last = [e["lastName"] for _, e in events if e["lastName"]]

    def accented(values):
        return [v for v in values if not v.isascii() and not JAPANESE.search(v)]

    assert accented(first)
    assert accented(last)
    assert accented(artists)
    assert accented(titles)
    assert any(JAPANESE.search(t) for t in titles)
    assert any(JAPANESE.search(a) for a in artists)
    # Events play them too.
    assert any(not e["song"].isascii() for _, e in events if e["song"])
    assert any(not e["artist"].isascii() for _, e in events if e["artist"])


def test_text_is_utf8_not_escaped(dataset):
    root, _, _, _ = dataset
    raw = b"".join(p.read_bytes() for p in log_files(root))
    assert b"\\u" not in raw
    assert not raw.isascii()
    raw.decode("utf-8")
    songs = b"".join(p.read_bytes() for p in (root / "song_data").rglob("*.json"))
    assert not songs.isascii()


def test_missing_coordinates_and_years(dataset):
    _, _, songs, _ = dataset
    lats = [s["artist_latitude"] for _, _, s in songs]
    years = [s["year"] for _, _, s in songs]
    assert any(lat is None for lat in lats)
    assert any(lat is not None for lat in lats)
    assert any(y == 0 for y in years)
    assert any(y != 0 for y in years)
    assert any(s["artist_location"] == "" for _, _, s in songs)


def test_match_share(dataset):
    _, _, songs, events = dataset
    catalog = {song_key(s["title"], s["artist_name"], s["duration"]) for _, _, s in songs}
    titles = {s["title"] for _, _, s in songs}
    plays = [e for _, e in events if e["page"] == "NextSong"]
    matched = [e for e in plays if song_key(e["song"], e["artist"], e["length"]) in catalog]
    share = len(matched) / len(plays)
    assert abs(share - 0.6) < 0.03, share
    # The rest play songs that are not in song_data at all.
    for event in plays:
        if song_key(event["song"], event["artist"], event["length"]) not in catalog:
            assert event["song"] not in titles


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_match_share_knob(tmp_path, share):
    generate(tmp_path, seed=5, songs=40, days=1, events_per_day=2000,
             match_share=share, users=20)
    catalog = {song_key(s["title"], s["artist_name"], s["duration"])
               for _, _, s in read_songs(tmp_path)}
    plays = [e for _, e in read_events(tmp_path) if e["page"] == "NextSong"]
    matched = sum(song_key(e["song"], e["artist"], e["length"]) in catalog for e in plays)
    assert abs(matched / len(plays) - share) < 0.05


def test_matching_compares_json_floats(dataset):
    """`length` and `duration` of a matched play are the same JSON number."""
    root, _, songs, _ = dataset
    durations = {s["song_id"]: text for _, text, s in songs}
    raw_durations = {re.search(r'"duration": ([0-9.]+)', t).group(1) for t in durations.values()}
    raw_lengths = set()
    for path in log_files(root):
        raw_lengths.update(re.findall(r'"length":([0-9.]+)', path.read_text(encoding="utf-8")))
    assert raw_durations & raw_lengths


# --- determinism, knobs, CLI ------------------------------------------------

def test_deterministic_per_seed(tmp_path):
    knobs = dict(songs=30, days=2, events_per_day=800, users=15)
    generate(tmp_path / "a", seed=7, **knobs)
    generate(tmp_path / "b", seed=7, **knobs)
    generate(tmp_path / "c", seed=8, **knobs)
    a, b, c = (tree_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a != c
    assert {k: v for k, v in a.items() if k.startswith("log_data")} != \
           {k: v for k, v in c.items() if k.startswith("log_data")}


def test_knobs(tmp_path):
    counts = generate(tmp_path, seed=1, songs=12, start_day=date(2019, 1, 31),
                      days=2, events_per_day=150, users=4, match_share=0.5)
    assert counts["events"] == 300 and counts["songs"] == 12
    assert len(read_songs(tmp_path)) == 12
    assert [p.relative_to(tmp_path).as_posix() for p in log_files(tmp_path)] == [
        "log_data/2019/01/2019-01-31-events.json",
        "log_data/2019/02/2019-02-01-events.json",
    ]
    events = read_events(tmp_path)
    assert len(events) == 300
    assert len({e["userId"] for _, e in events} - {""}) <= 4


def test_refuses_to_overwrite_unless_asked(tmp_path):
    generate(tmp_path, seed=1, songs=30, days=2, events_per_day=50)
    with pytest.raises(FileExistsError):
        generate(tmp_path, seed=1, songs=10, days=1, events_per_day=50)
    generate(tmp_path, seed=1, songs=10, days=1, events_per_day=50, overwrite=True)
    assert len(read_songs(tmp_path)) == 10  # no stale files left behind
    assert len(log_files(tmp_path)) == 1


def test_zero_events_still_writes_day_files(tmp_path):
    counts = generate(tmp_path, songs=3, days=2, events_per_day=0, users=2)
    assert counts["events"] == 0
    assert [p.read_bytes() for p in log_files(tmp_path)] == [b"", b""]


def test_cli_matches_api(tmp_path):
    args = ["--seed", "3", "--songs", "20", "--start-day", "2018-11-29",
            "--days", "3", "--events-per-day", "400", "--match-share", "0.5",
            "--users", "10"]
    result = subprocess.run(
        [sys.executable, "-m", "scripts.sample_data", "--out", str(tmp_path / "cli"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "1200 events" in result.stdout
    generate(tmp_path / "api", seed=3, songs=20, start_day=date(2018, 11, 29), days=3,
             events_per_day=400, match_share=0.5, users=10)
    cli = tree_bytes(tmp_path / "cli")
    assert cli == tree_bytes(tmp_path / "api")
    assert "log_data/2018/12/2018-12-01-events.json" in cli


def test_cli_rejects_bad_knobs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "scripts.sample_data", "--out", str(tmp_path),
         "--match-share", "1.5"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "match-share" in result.stderr
    assert not (tmp_path / "log_data").exists()


# --- memory -----------------------------------------------------------------

def test_memory_stays_small_tracemalloc(tmp_path):
    # tracemalloc slows allocation-heavy code ~8x, so this run is modest;
    # holding its 30k lines (~13 MB of text) would already break the limit.
    tracemalloc.start()
    try:
        generate(tmp_path, seed=2, songs=300, days=1, events_per_day=30_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, peak
    assert sum(1 for _ in open(log_files(tmp_path)[0], "rb")) == 30_000


MEMORY_PROBE = """
import resource, sys
from pathlib import Path
from scripts.sample_data import generate
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
generate(Path(sys.argv[1]), seed=2, songs=300, days=1, events_per_day=200_000)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before)  # KiB on Linux
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ")
def test_memory_stays_small_200k_events(tmp_path):
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    growth_kib = int(result.stdout.strip())
    assert growth_kib < 20 * 1024, growth_kib
    log = log_files(tmp_path)[0]
    assert log.read_bytes().count(b"\n") == 200_000


def _values(path: Path) -> list:
    """Every JSON value in a file, whatever its layout."""
    text, values, position, decoder = path.read_text(encoding="utf-8"), [], 0, json.JSONDecoder()
    while True:
        position = len(text) - len(text[position:].lstrip(" \t\r\n"))
        if position == len(text):
            return values
        value, position = decoder.raw_decode(text, position)
        values.append(value)


def test_layout_knobs_write_the_same_records_in_copys_other_layouts(tmp_path):
    plain, other = tmp_path / "plain", tmp_path / "other"
    knobs = dict(seed=5, songs=4, days=1, events_per_day=50)
    generate(plain, **knobs)
    generate(other, **knobs, pretty_songs=True, events_per_line=3, crlf=True)
    files = sorted(p.relative_to(plain) for p in plain.rglob("*.json"))
    assert files == sorted(p.relative_to(other) for p in other.rglob("*.json"))
    for name in files:
        assert _values(other / name) == _values(plain / name), name
    song = next((other / "song_data").rglob("*.json")).read_bytes()
    assert song.startswith(b"{\r\n    \"") and song.count(b"\r\n") > 5
    log = next((other / "log_data").rglob("*.json")).read_bytes()
    lines = log.split(b"\r\n")
    assert lines[-1] == b"" and b"\n" not in log.replace(b"\r\n", b"")
    assert len(lines) - 1 == -(-50 // 3) and lines[0].count(b'"ts":') == 3
    with pytest.raises(ValueError):
        generate(tmp_path / "bad", **knobs, events_per_line=0)
