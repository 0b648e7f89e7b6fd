"""Data-quality checks, declared as data: one entry per table, run by common.sql's
``SQLColumnCheckOperator`` and ``SQLTableCheckOperator``.

``window_column`` scopes a table's checks to the run's window, so their cost follows the
hour and an empty hour passes. Table checks (allowed values, ranges, references, reconciliation)
are written as aggregates so they return one row, and pass, when the window is empty.
"""

from __future__ import annotations

NOT_NULL = {"null_check": {"equal_to": 0}}
KEY = {"null_check": {"equal_to": 0}, "unique_check": {"equal_to": 0}}

WINDOW_PREDICATE = "{column} >= '{{{{ run_window(params, data_interval_start, data_interval_end)[0] }}}}' AND {column} < '{{{{ run_window(params, data_interval_start, data_interval_end)[1] }}}}'"


def window_clause(column: str) -> str:
    """A templated WHERE predicate selecting the run's window on ``column``."""
    return WINDOW_PREDICATE.format(column=column)


QUALITY_CHECKS: dict[str, dict] = {
    "songplays": {
        "window_column": "start_time",
        "columns": {"songplay_id": KEY, "start_time": NOT_NULL, "user_id": NOT_NULL, "session_id": NOT_NULL},
        "table": {
            "level_allowed": {"check_statement": "COUNT(*) = COUNT(CASE WHEN level IN ('free', 'paid') THEN 1 END)"},
            "user_in_users": {
                "check_statement": "COUNT(*) = COUNT(CASE WHEN user_id IN (SELECT user_id FROM users) THEN 1 END)"
            },
            "start_time_in_time": {
                "check_statement": "COUNT(*) = COUNT(CASE WHEN start_time IN (SELECT start_time FROM time) THEN 1 END)"
            },
            "song_in_songs": {
                "check_statement": "COUNT(song_id) = COUNT(CASE WHEN song_id IN (SELECT song_id FROM songs) THEN 1 END)"
            },
            "artist_in_artists": {
                "check_statement": "COUNT(artist_id) = COUNT(CASE WHEN artist_id IN (SELECT artist_id FROM artists) THEN 1 END)"
            },
            "matches_staged_plays": {
                "check_statement": (
                    "COUNT(*) = (SELECT COUNT(*) FROM (SELECT DISTINCT userid, sessionid, iteminsession, ts "
                    "FROM staging_events WHERE page = 'NextSong' AND userid IS NOT NULL AND "
                    + window_clause("ts")
                    + ") staged)"
                )
            },
        },
    },
    "time": {
        "window_column": "start_time",
        "columns": {"start_time": KEY, **{part: NOT_NULL for part in ("hour", "day", "week", "month", "year", "weekday")}},
        "table": {
            f"{part}_in_range": {"check_statement": f"COUNT(*) = COUNT(CASE WHEN {part} BETWEEN {low} AND {high} THEN 1 END)"}
            for part, low, high in (("hour", 0, 23), ("day", 1, 31), ("week", 1, 53), ("month", 1, 12), ("weekday", 0, 6))
        },
    },
    "users": {
        "columns": {"user_id": KEY},
        "table": {
            "level_allowed": {"check_statement": "COUNT(*) = COUNT(CASE WHEN level IN ('free', 'paid') THEN 1 END)"},
            "gender_allowed": {
                "check_statement": "COUNT(gender) = COUNT(CASE WHEN gender IN ('M', 'F') THEN 1 END)"
            },
        },
    },
    "songs": {"columns": {"song_id": KEY}},
    "artists": {"columns": {"artist_id": KEY}},
}
