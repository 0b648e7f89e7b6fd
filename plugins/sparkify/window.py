"""The time window a run processes: validation and the S3 day files it touches."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from airflow.sdk.exceptions import AirflowFailException

HOUR = timedelta(hours=1)


class WindowError(AirflowFailException, ValueError):
    """A run window that can't be processed: the task fails without retries, as retrying won't fix it."""


def parse_instant(value: str | datetime, name: str) -> datetime:
    """Parse an ISO-8601 instant into a naive UTC datetime (the warehouse stores UTC)."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise WindowError(f"{name}={value!r} is not an ISO-8601 timestamp, e.g. 2018-11-01T00:00:00Z") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def resolve_window(start: str | datetime, end: str | datetime) -> tuple[datetime, datetime]:
    """Validate a window [start, end): both on whole UTC hours, start before end."""
    window_start, window_end = parse_instant(start, "start"), parse_instant(end, "end")
    for name, moment in (("start", window_start), ("end", window_end)):
        if moment != moment.replace(minute=0, second=0, microsecond=0):
            raise WindowError(f"{name}={moment.isoformat()} must fall on a whole UTC hour")
    if window_start >= window_end:
        raise WindowError(f"window start {window_start.isoformat()} must be before end {window_end.isoformat()}")
    return window_start, window_end


def days_in_window(window_start: datetime, window_end: datetime) -> list[date]:
    """UTC days overlapping [start, end): each day's events live in that day's file."""
    last_day = (window_end - timedelta(microseconds=1)).date()
    day, days = window_start.date(), []
    while day <= last_day:
        days.append(day)
        day += timedelta(days=1)
    return days


def hours_in_window(window_start: datetime, window_end: datetime) -> list[datetime]:
    """The whole hours in [start, end)."""
    hours, hour = [], window_start
    while hour < window_end:
        hours.append(hour)
        hour += HOUR
    return hours


def run_window(params: dict, data_interval_start: datetime, data_interval_end: datetime) -> tuple[str, str]:
    """The window a run processes, as ISO strings for templates: the ``start``/``end`` params
    of a manual run (both or neither), else the scheduled data interval. Validated, so it is
    safe in SQL text; an invalid window raises ``WindowError`` in the first task rendering it."""
    start, end = params.get("start"), params.get("end")
    if bool(start) != bool(end):
        # Half a window would silently take its other bound from the data interval.
        raise WindowError(
            f"params start={start!r} and end={end!r}: give both start and end for a manual window "
            "(e.g. start=2018-11-01T00:00:00Z end=2018-11-02T00:00:00Z), or neither to process the data interval"
        )
    if not start:
        start, end = data_interval_start, data_interval_end
    window_start, window_end = resolve_window(start, end)
    return window_start.isoformat(sep=" "), window_end.isoformat(sep=" ")
