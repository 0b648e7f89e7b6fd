"""An independent model of the warehouse, computed in plain Python from the JSON files.

Tests compare the pipeline's tables against this, so the expected values never come from
the SQL under test.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

EPOCH = datetime(1970, 1, 1)


def event_time(ts_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ts_ms)


def read_json_values(path: Path) -> list:
    """Every JSON value in a file, however they are laid out (the whole file at once)."""
    text, values, position = path.read_text(encoding="utf-8"), [], 0
    decoder = json.JSONDecoder()
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position == len(text):
            return values
        value, position = decoder.raw_decode(text, position)
        values.append(value)


def read_events(data_dir: Path) -> list[dict]:
    return [event for path in sorted((data_dir / "log_data").rglob("*.json")) for event in read_json_values(path)]


def read_songs(data_dir: Path) -> list[dict]:
    return [song for path in sorted((data_dir / "song_data").rglob("*.json")) for song in read_json_values(path)]


def songplay_id(user_id: int, session_id: int, item_in_session: int, moment: datetime) -> str:
    """As documented in include/sql/macros.sql: md5 of user|session|item|ts to the microsecond."""
    identity = f"{user_id}|{session_id}|{item_in_session}|{moment:%Y-%m-%d %H:%M:%S.%f}"
    return hashlib.md5(identity.encode()).hexdigest()


class _Inverted:
    """Orders its value the other way round (None, which never compares, as equal)."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return self.value == other.value

    def __lt__(self, other):
        return self.value is not None and other.value is not None and self.value > other.value


def _nulls_last(*values) -> tuple:
    return tuple((value is None, value) for value in values)


def _user(event: dict) -> int | None:
    return int(event["userId"]) if str(event.get("userId") or "").strip() else None


def _number(value):
    """A float column's value: COPY reads a JSON string of a number as that number."""
    return float(value) if isinstance(value, str) and value.strip() else _blank(value)


def _blank(value):
    return None if isinstance(value, str) and not value.strip() else value


@dataclass
class Warehouse:
    songplays: list[tuple] = field(default_factory=list)  # without songplay_id, sorted by repr
    songplay_ids: dict[str, tuple] = field(default_factory=dict)  # songplay_id -> its play
    users: dict[int, tuple] = field(default_factory=dict)
    songs: dict[str, tuple] = field(default_factory=dict)
    artists: dict[str, tuple] = field(default_factory=dict)
    time: dict[datetime, tuple] = field(default_factory=dict)


def expected_warehouse(events: list[dict], songs: list[dict], windows: list[tuple[datetime, datetime]]) -> Warehouse:
    """The star schema after processing ``windows`` (in any order) over these inputs."""

    def in_windows(moment: datetime) -> bool:
        return any(start <= moment < end for start, end in windows)

    model = Warehouse()
    by_match: dict[tuple, list[dict]] = {}
    for song in songs:
        by_match.setdefault((song["title"], song["artist_name"], song["duration"]), []).append(song)
        model.songs.setdefault(song["song_id"], [])
    for song_id in model.songs:
        candidates = sorted(
            ((s["title"], s["artist_id"], s["year"], s["duration"]) for s in songs if s["song_id"] == song_id),
            key=lambda row: tuple((value is None, value) for value in row),
        )
        title, artist_id, year, duration = candidates[0]
        model.songs[song_id] = (title, artist_id, year, duration)
    for artist_id in {s["artist_id"] for s in songs}:
        candidates = sorted(
            (s for s in songs if s["artist_id"] == artist_id),
            key=lambda s: (_blank(s["artist_location"]) is None, s["artist_latitude"] is None,
                           *_nulls_last(s["song_id"], s["artist_name"], _blank(s["artist_location"]),
                                        s["artist_latitude"], s["artist_longitude"])),
        )
        best = candidates[0]
        model.artists[artist_id] = (
            best["artist_name"], _blank(best["artist_location"]), best["artist_latitude"], best["artist_longitude"],
        )

    plays: dict[tuple, tuple] = {}  # event identity -> (choice key, play)
    latest: dict[int, tuple] = {}
    for event in events:
        moment, user_id = event_time(event["ts"]), _user(event)
        if user_id is None or not in_windows(moment):
            continue
        session_id, item = int(event["sessionId"]), int(event["itemInSession"])
        # The latest event by (ts, session, item); among copies of one event, the lowest values.
        first, last, gender, level = (_blank(event.get(key)) for key in ("firstName", "lastName", "gender", "level"))
        rank = ((moment, session_id, item),
                tuple((value is not None, _Inverted(value)) for value in (level, first, last, gender)))
        if user_id not in latest or rank > latest[user_id][0]:
            latest[user_id] = (rank, (first, last, gender, level))
        if event["page"] != "NextSong":
            continue
        # An event staged twice gives one play: the copy first by the values the play takes.
        level, location, agent = _blank(event.get("level")), _blank(event.get("location")), _blank(event.get("userAgent"))
        length = _number(event.get("length"))
        choice = _nulls_last(level, location, agent, _blank(event.get("song")), _blank(event.get("artist")), length)
        identity = (user_id, session_id, item, moment)
        if identity in plays and plays[identity][0] <= choice:
            continue
        matches = sorted(by_match.get((event.get("song"), event.get("artist"), length), []), key=lambda s: s["song_id"])
        song = matches[0] if matches else None
        plays[identity] = (choice, (
            moment, user_id, level, song and song["song_id"], song and song["artist_id"], session_id, location, agent,
        ))
    for identity, (_, play) in plays.items():
        model.songplay_ids[songplay_id(*identity)] = play
        moment = play[0]
        model.time[moment] = (
            moment.hour, moment.day, moment.isocalendar()[1], moment.month, moment.year, (moment.isoweekday() % 7),
        )
    model.users = {user_id: values for user_id, (_, values) in latest.items()}
    model.songplays = sorted(model.songplay_ids.values(), key=repr)
    return model
