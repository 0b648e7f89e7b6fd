"""Data-quality checks, declared as data: one entry per table, run by common.sql's
``SQLColumnCheckOperator`` and ``SQLTableCheckOperator``.

``window_column`` scopes a table's checks to the run's window, so their cost follows the
hour and an empty hour passes. ``rows`` are conditions every row must meet (allowed values, ranges,
references); ``table`` holds aggregate checks (reconciliation). Both pass on an empty window.
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
        "rows": {
            "level_allowed": "level IN ('free', 'paid')",
            # Redshift does not enforce foreign keys, so references are checked here.
            "user_in_users": "user_id IN (SELECT user_id FROM users)",
            "start_time_in_time": "start_time IN (SELECT start_time FROM time)",
            "song_in_songs": "song_id IS NULL OR song_id IN (SELECT song_id FROM songs)",
            "artist_in_artists": "artist_id IS NULL OR artist_id IN (SELECT artist_id FROM artists)",
        },
        "table": {
            # Reconciliation: one songplay per distinct staged NextSong event with a user id.
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
        "rows": {
            f"{part}_in_range": f"{part} BETWEEN {low} AND {high}"
            for part, low, high in (("hour", 0, 23), ("day", 1, 31), ("week", 1, 53), ("month", 1, 12), ("weekday", 0, 6))
        },
    },
    "users": {
        "columns": {"user_id": KEY},
        "rows": {
            "level_allowed": "level IN ('free', 'paid')",
            "gender_allowed": "gender IS NULL OR gender IN ('M', 'F')",
        },
    },
    "songs": {"columns": {"song_id": KEY}},
    "artists": {"columns": {"artist_id": KEY}},
    # Source lines read = rows staged + rows rejected, for every staged object.
    "stage_load_ledger": {
        "rows": {"lines_reconcile": "lines_read IS NULL OR lines_read = rows_staged + rows_rejected"},
    },
}
