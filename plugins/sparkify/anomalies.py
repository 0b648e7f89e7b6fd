"""Anomaly checks: metrics of the run's window against the same metrics over the trailing days.

Loss that every other check misses (a key allowed to be absent, a key missing from part of the
records, a vanished key on Redshift where COPY can't count keys, a load that drops rows) shows as
a drop in a share. Each metric is a count over a count; it fails when the window's value is below
the baseline's (the same counts summed over the ``baseline_days`` before the window) divided by
``drop_factor``. A metric is judged only when the baseline predicts at least ``min_expected``
counts in the window (baseline share x the window's denominator): so an empty window, a
first-ever window (no baseline) and a sparse hour pass, as the share of a handful of events says
nothing, and a rare value's absence is no anomaly.

Why not common.sql's ``SQLIntervalCheckOperator`` or ``SQLThresholdCheckOperator``: the interval
check compares one date partition (``date_filter_column = ds``) with one earlier date, not an hour
window with a trailing period, and its ratios are symmetric (a rise fails like a drop); a
threshold check holds one value, so the 20 metrics would be 20 queries and 20 tasks. Here they
share two scans, run in-process against any warehouse connection (``check_anomalies``), and the
metrics are data (``FIXED_METRICS`` plus one per staged column).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sparkify.warehouse import split_statements, validate_identifier

BASELINE_DAYS = 7
DROP_FACTOR = 2.0
MIN_EXPECTED = 20
STAGED_TABLE = "staging_events"
# The events query, then the songplays one, for the staged columns given as ``columns``.
METRICS_TEMPLATE = "checks/anomaly_metrics.sql"

GetRecords = Callable[[str, dict], list[tuple]]
Render = Callable[..., str]


@dataclass(frozen=True)
class Metric:
    """``numerator / denominator``, both counts the metrics query returns per period."""

    name: str
    description: str
    numerator: str
    denominator: str


FIXED_METRICS = (
    Metric("nextsong_user_share", "share of staged NextSong events that carry a user id", "plays_with_user", "plays"),
    Metric("songplays_per_staged_play", "songplays per staged NextSong event, over loaded hours",
           "songplays", "loaded_plays"),
)


def column_metrics(columns: list[str]) -> list[Metric]:
    """One metric per staged column: the share of the window's staged events with a value in it."""
    return [Metric(f"{STAGED_TABLE}.{column}.non_null_share", f"share of staged events with a {column} value",
                   f"present_{index}", "events") for index, column in enumerate(columns)]


@dataclass
class Result:
    metric: Metric
    window: tuple[int, int]  # numerator, denominator
    baseline: tuple[int, int]
    status: str  # "pass", "FAIL", or why it passes unjudged

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


def _share(counts: tuple[int, int]) -> float | None:
    return counts[0] / counts[1] if counts[1] else None


def evaluate(values: dict[str, dict[str, int]], metrics: list[Metric], drop_factor: float,
             min_expected: float) -> list[Result]:
    """Judge each metric from the counts per period ('window', 'baseline')."""
    results = []
    for metric in metrics:
        window, baseline = ((int(values.get(period, {}).get(metric.numerator) or 0),
                             int(values.get(period, {}).get(metric.denominator) or 0))
                            for period in ("window", "baseline"))
        now, before = _share(window), _share(baseline)
        if now is None:
            status = "pass (empty window)"
        elif before is None:
            status = "pass (no history)"
        elif before * window[1] < min_expected:
            status = "pass (too few to judge)"
        else:
            status = "FAIL" if now * drop_factor < before else "pass"
        results.append(Result(metric, window, baseline, status))
    return results


def _value(counts: tuple[int, int]) -> str:
    share = _share(counts)
    return "-" if share is None else f"{share:.3f} ({counts[0]:,}/{counts[1]:,})"


def report_rows(results: list[Result], drop_factor: float) -> list[tuple[str, ...]]:
    """(metric, window, baseline, fails below, result) per metric, for the log's table."""
    return [(r.metric.name, _value(r.window), _value(r.baseline),
             "-" if _share(r.baseline) is None else f"{_share(r.baseline) / drop_factor:.3f}", r.status)
            for r in results]


def failure_report(results: list[Result], drop_factor: float, window: tuple[datetime, datetime],
                   baseline_start: datetime) -> str:
    """The failing metrics: each with today's value, the baseline and the threshold."""
    lines = []
    for r in results:
        if r.failed:
            lines.append(
                f"FAILED {r.metric.name} ({r.metric.description}): window {_value(r.window)} "
                f"[{window[0]:%Y-%m-%d %H:%M}, {window[1]:%Y-%m-%d %H:%M}), baseline {_value(r.baseline)} "
                f"[{baseline_start:%Y-%m-%d %H:%M}, {window[0]:%Y-%m-%d %H:%M}); fails below baseline / "
                f"{drop_factor:g} = {_share(r.baseline) / drop_factor:.3f}")
    return f"{len(lines)} anomaly check(s) failed:\n" + "\n".join(lines)


def check_anomalies(get_records: GetRecords, render: Render, window_start: datetime, window_end: datetime,
                    baseline_days: float = BASELINE_DAYS, drop_factor: float = DROP_FACTOR,
                    min_expected: float = MIN_EXPECTED) -> tuple[list[Result], datetime]:
    """Measure and judge every metric for [window_start, window_end); returns the results and
    the baseline's start. ``get_records(sql, parameters)`` runs one query (``%(name)s`` binds),
    ``render(template, **variables)`` renders an include/sql template for the warehouse."""
    if baseline_days <= 0 or drop_factor < 1 or min_expected < 0:
        raise ValueError(f"baseline_days={baseline_days} must be > 0, drop_factor={drop_factor} >= 1 "
                         f"and min_expected={min_expected} >= 0")
    columns = [name for name, *_ in get_records(render("stage/columns.sql"), {"table": STAGED_TABLE})]
    for column in columns:
        validate_identifier(column, f"{STAGED_TABLE} column")  # the names go into the query's text
    baseline_start = window_start - timedelta(days=baseline_days)
    params = {"window_start": window_start, "window_end": window_end, "baseline_start": baseline_start}
    events_sql, songplays_sql = split_statements(render(METRICS_TEMPLATE, columns=columns))
    names = ["events", "plays", "plays_with_user", *(f"present_{index}" for index in range(len(columns)))]
    values: dict[str, dict[str, int]] = {}
    for period, *counts in get_records(events_sql, params):
        values.setdefault(period, {}).update(zip(names, counts))
    for period, songplays, loaded_plays in get_records(songplays_sql, params):
        values.setdefault(period, {}).update(songplays=songplays, loaded_plays=loaded_plays)
    return evaluate(values, [*FIXED_METRICS, *column_metrics(columns)], drop_factor, min_expected), baseline_start
