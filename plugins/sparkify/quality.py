"""Data-quality checks, declared as data: one entry per table, in the shape of common.sql's
``SQLColumnCheckOperator`` and ``SQLTableCheckOperator`` arguments, and run by
``sparkify.operators.quality.QualityChecksOperator``.

``window_column`` scopes a table's checks to the run's window, so their cost follows the
hour and an empty hour passes. ``rows`` are conditions every row must meet (allowed values, ranges,
references); a failure reports how many rows don't. ``table`` holds aggregate checks
(reconciliation): ``actual`` over the checked rows must equal ``expected``, and ``offending``
lists rows that explain a difference. All of them pass on an empty window.
"""

from __future__ import annotations

NOT_NULL = {"null_check": {"equal_to": 0}}
KEY = {"null_check": {"equal_to": 0}, "unique_check": {"equal_to": 0}}

# The window's distinct staged plays: what load/songplays.sql turns into one songplay each.
STAGED_PLAYS = (
    "{% import 'macros.sql' as m %}SELECT DISTINCT userid, sessionid, iteminsession, ts FROM staging_events "
    "WHERE page = 'NextSong' AND userid IS NOT NULL AND {{ m.in_window('ts') }}"
)
# A staged play's songplay_id, by the macro load/songplays.sql derives it with.
STAGED_PLAY_ID = "{% import 'macros.sql' as m %}{{ m.songplay_id('staged') }}"

# Ranges of the time parts, as load/time.sql derives them (ISO week, Sunday = 0). Event ts
# are Unix epoch milliseconds, so a year before 1970 means a negative ts and one past 2100 a
# unit mix-up (seconds or microseconds read as milliseconds), never real data.
TIME_PART_RANGES = (("hour", 0, 23), ("day", 1, 31), ("week", 1, 53), ("month", 1, 12),
                    ("year", 1970, 2100), ("weekday", 0, 6))


def songplays_drift(scope: str) -> str:
    """The row condition on loaded_hours that its hour's songplays are current, over the run's
    hours (``'run'``) or every loaded hour (``'all'``); see include/sql/checks/songplays_drift.sql."""
    return f"{{% set drift_scope = '{scope}' %}}{{% include 'checks/songplays_drift.sql' %}}"


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
                "description": "songplays in the window (actual) = distinct staged plays in the window (expected)",
                "actual": "COUNT(*)",
                "expected": f"(SELECT COUNT(*) FROM ({STAGED_PLAYS}) staged)",
                "offending": (
                    f"SELECT staged.* FROM ({STAGED_PLAYS}) staged WHERE NOT EXISTS "
                    f"(SELECT 1 FROM songplays WHERE songplays.songplay_id = {STAGED_PLAY_ID}) ORDER BY staged.ts"
                ),
            },
        },
    },
    "time": {
        "window_column": "start_time",
        "columns": {"start_time": KEY, **{part: NOT_NULL for part, _, _ in TIME_PART_RANGES}},
        "rows": {f"{part}_in_range": f"{part} BETWEEN {low} AND {high}" for part, low, high in TIME_PART_RANGES},
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
    # The hours this run loaded or refreshed hold exactly the songplays staging gives now: none
    # went stale after late, changed or removed data. sparkify_audit checks every loaded hour.
    "loaded_hours": {
        "rows": {"songplays_current": songplays_drift("run")},
    },
    # Source lines read = rows staged + rows rejected, for every staged object.
    "stage_load_ledger": {
        "rows": {"lines_reconcile": "lines_read = rows_staged + rows_rejected"},
    },
}
