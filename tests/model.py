"""An independent model of the warehouse, computed in plain Python from the JSON files.

Tests compare the pipeline's tables against this, so the expected values never come from
the SQL under test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

EPOCH = datetime(1970, 1, 1)


def event_time(ts_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ts_ms)


def read_events(data_dir: Path) -> list[dict]:
    events = []
    for path in sorted((data_dir / "log_data").rglob("*.json")):
        with path.open("rb") as lines:
            events.extend(json.loads(line) for line in lines if line.strip())
    return events


def read_songs(data_dir: Path) -> list[dict]:
    return [json.loads(path.read_bytes()) for path in sorted((data_dir / "song_data").rglob("*.json"))]


def _user(event: dict) -> int | None:
    return int(event["userId"]) if str(event.get("userId") or "").strip() else None


def _blank(value):
    return None if isinstance(value, str) and not value.strip() else value


@dataclass
class Warehouse:
    songplays: list[tuple] = field(default_factory=list)  # without songplay_id
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
            key=lambda s: (_blank(s["artist_location"]) is None, s["artist_latitude"] is None, s["song_id"], s["artist_name"]),
        )
        best = candidates[0]
        model.artists[artist_id] = (
            best["artist_name"], _blank(best["artist_location"]), best["artist_latitude"], best["artist_longitude"],
        )

    seen_plays = set()
    latest: dict[int, tuple] = {}
    for event in events:
        moment, user_id = event_time(event["ts"]), _user(event)
        if user_id is None or not in_windows(moment):
            continue
        rank = (moment, event["sessionId"], event["itemInSession"])
        if user_id not in latest or rank > latest[user_id][0]:
            latest[user_id] = (rank, (_blank(event["firstName"]), _blank(event["lastName"]), _blank(event["gender"]), _blank(event["level"])))
        if event["page"] != "NextSong":
            continue
        identity = (user_id, event["sessionId"], event["itemInSession"], moment)
        if identity in seen_plays:
            continue
        seen_plays.add(identity)
        matches = sorted(by_match.get((event["song"], event["artist"], event["length"]), []), key=lambda s: s["song_id"])
        song = matches[0] if matches else None
        model.songplays.append((
            moment, user_id, _blank(event["level"]), song and song["song_id"], song and song["artist_id"],
            event["sessionId"], _blank(event["location"]), _blank(event["userAgent"]),
        ))
        model.time[moment] = (
            moment.hour, moment.day, moment.isocalendar()[1], moment.month, moment.year, (moment.isoweekday() % 7),
        )
    model.users = {user_id: values for user_id, (_, values) in latest.items()}
    model.songplays.sort(key=repr)
    return model
