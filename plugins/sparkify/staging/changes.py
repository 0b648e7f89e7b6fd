"""What a staging change means for the star schema: which loaded hours, users and song match
keys it touches (queued for the loads to re-derive), and which staged objects went missing.

The SQL is a template per staging table (``stage/stale_hours.sql``, ``stage/stale_song_matches.sql``),
rendered around the change: phase ``before`` sums the rows the change touches as they were,
phase ``after`` as they are, queues what differs and returns it for the log.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from sparkify.warehouse import first_code_line, split_statements

SHOWN = 10


def run_phase(cursor: Any, render: Callable[..., str], template: str, phase: str, params: Mapping[str, Any]) -> list[tuple]:
    """Run one phase of a change template; returns the rows of its SELECT (the change report)."""
    report: list[tuple] = []
    for statement in split_statements(render(template, phase=phase)):
        cursor.execute(statement, params)
        if first_code_line(statement).upper().startswith("SELECT"):
            report = cursor.fetchall()
    return report


def log_report(log: Any, table: str, template: str, rows: list[tuple]) -> None:
    """Say in the task log what a change queued for the loads."""
    if template.endswith("stale_hours.sql"):
        if not rows:
            return
        log.info("%s: the change touches %d hours already loaded; queued for the next songplays, time and users "
                 "loads to refresh:", table, len(rows))
        for hour, before, after in rows[:SHOWN]:
            log.info("%s:   %s: %s rows before, %s after", table, f"{hour:%Y-%m-%d %H:00}", f"{before:,}", f"{after:,}")
        if len(rows) > SHOWN:
            log.info("%s:   ... and %d more hours (stale_hours)", table, len(rows) - SHOWN)
    else:
        [(keys,)] = rows or [(0,)]
        if keys:
            log.info("%s: %d song match keys (title, artist, duration) changed; the next songplays load re-matches "
                     "the loaded plays that have them", table, keys)


def missing_objects(staged: Mapping[str, str], listed: Iterable[str], requested: Iterable[str]) -> dict[str, str]:
    """The staged objects (key -> ETag) a listing should have found but didn't: those whose key
    was asked for, or lies under a prefix (ending in ``/``) that was listed."""
    listed = set(listed)
    exact = {key for key in requested if not key.endswith("/")}
    prefixes = tuple(key for key in requested if key.endswith("/"))
    return {
        key: etag for key, etag in staged.items()
        if key not in listed and (key in exact or (prefixes and key.startswith(prefixes)))
    }
