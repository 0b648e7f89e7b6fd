"""The time window a run processes, as one value: validated, with its hours and UTC days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

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


@dataclass(frozen=True)
class Window:
    """[start, end) in naive UTC, both on whole hours, start before end."""

    start: datetime
    end: datetime

    @classmethod
    def of(cls, start: str | datetime, end: str | datetime) -> Window:
        window_start, window_end = parse_instant(start, "start"), parse_instant(end, "end")
        for name, moment in (("start", window_start), ("end", window_end)):
            if moment != moment.replace(minute=0, second=0, microsecond=0):
                raise WindowError(f"{name}={moment.isoformat()} must fall on a whole UTC hour")
        if window_start >= window_end:
            raise WindowError(f"window start {window_start.isoformat()} must be before end {window_end.isoformat()}")
        return cls(window_start, window_end)

    @property
    def hours(self) -> list[datetime]:
        """The whole hours in [start, end)."""
        return [self.start + HOUR * n for n in range(int((self.end - self.start) / HOUR))]

    @property
    def days(self) -> list[date]:
        """UTC days overlapping [start, end): each day's events live in that day's file."""
        last_day = (self.end - timedelta(microseconds=1)).date()
        return [self.start.date() + timedelta(days=n) for n in range((last_day - self.start.date()).days + 1)]

    def parameters(self) -> dict[str, datetime]:
        """The window as the SQL files bind it."""
        return {"window_start": self.start, "window_end": self.end}

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def run_window(context: Mapping[str, Any]) -> Window:
    """The window a run processes: the ``start``/``end`` params of a manual run (both or
    neither), else the scheduled data interval. An invalid window raises ``WindowError``."""
    params = context.get("params") or {}
    start, end = params.get("start"), params.get("end")
    if bool(start) != bool(end):
        # Half a window would silently take its other bound from the data interval.
        raise WindowError(
            f"params start={start!r} and end={end!r}: give both start and end for a manual window "
            "(e.g. start=2018-11-01T00:00:00Z end=2018-11-02T00:00:00Z), or neither to process the data interval"
        )
    if not start:
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        raise WindowError("the run has no data interval and no start/end params")
    return Window.of(start, end)
