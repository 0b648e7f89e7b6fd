from __future__ import annotations

from datetime import date, datetime

import pytest

from sparkify.window import Window, WindowError, run_window


def test_window_is_normalised_to_naive_utc():
    assert Window.of("2018-11-01T01:00:00+01:00", "2018-11-01T02:00:00Z") == Window(
        datetime(2018, 11, 1, 0), datetime(2018, 11, 1, 2))


@pytest.mark.parametrize(("start", "end"), [
    ("2018-11-01T02:00:00Z", "2018-11-01T01:00:00Z"),
    ("2018-11-01T01:00:00Z", "2018-11-01T01:00:00Z"),
    ("2018-11-01T01:30:00Z", "2018-11-01T02:00:00Z"),
    ("not a time", "2018-11-01T02:00:00Z"),
])
def test_bad_windows_are_refused(start, end):
    with pytest.raises(WindowError):
        Window.of(start, end)


def test_days_and_hours_of_a_window():
    window = Window(datetime(2018, 11, 1, 22), datetime(2018, 11, 2, 1))
    assert window.days == [date(2018, 11, 1), date(2018, 11, 2)]
    assert Window(datetime(2018, 11, 1, 23), datetime(2018, 11, 2)).days == [date(2018, 11, 1)]
    assert window.hours == [datetime(2018, 11, 1, 22), datetime(2018, 11, 1, 23), datetime(2018, 11, 2, 0)]
    assert window.parameters() == {"window_start": window.start, "window_end": window.end}


INTERVAL = {"data_interval_start": datetime(2018, 11, 1, 3), "data_interval_end": datetime(2018, 11, 1, 4)}


def context(params: dict) -> dict:
    return {"params": params, **INTERVAL}


def test_run_window_prefers_params_over_the_data_interval():
    hour = Window(datetime(2018, 11, 1, 3), datetime(2018, 11, 1, 4))
    assert run_window(context({})) == hour
    assert run_window(context({"start": None, "end": None})) == hour
    assert run_window(context({"start": "2018-11-01T00:00:00Z", "end": "2018-11-02T00:00:00Z"})) == Window(
        datetime(2018, 11, 1), datetime(2018, 11, 2))


@pytest.mark.parametrize("params", [
    {"start": "2018-11-01T00:00:00Z"},
    {"start": "2018-11-01T00:00:00Z", "end": None},
    {"end": "2018-11-02T00:00:00Z"},
    {"start": "", "end": "2018-11-02T00:00:00Z"},
])
def test_run_window_needs_both_params_or_neither(params):
    # Either bound alone would otherwise fall back to the data interval for the other.
    with pytest.raises(WindowError, match="give both start and end"):
        run_window(context(params))


@pytest.mark.parametrize(("start", "end"), [
    ("2018-11-01T05:00:00Z", "2018-11-01T04:00:00Z"),
    ("2018-11-01T04:00:00Z", "2018-11-01T04:00:00Z"),
])
def test_run_window_refuses_start_not_before_end(start, end):
    with pytest.raises(WindowError, match="must be before end"):
        run_window(context({"start": start, "end": end}))


# That a bad window fails its task at once, without retries, is tested through a real DAG run:
# tests/integration/test_etl_semantics.py::test_invalid_window_fails_at_once_without_retries.


@pytest.mark.parametrize(("start", "end", "message"), [
    ("not a time", "2018-11-01T02:00:00Z",
     "start='not a time' is not an ISO-8601 timestamp, e.g. 2018-11-01T00:00:00Z"),
    ("2018-11-01T01:00:00Z", "2018-11-01", "window start 2018-11-01T01:00:00 must be before end 2018-11-01T00:00:00"),
    ("2018-11-01T01:30:00+01:00", "2018-11-01T02:00:00Z", "start=2018-11-01T00:30:00 must fall on a whole UTC hour"),
    ("2018-11-01T01:00:00Z", "2018-11-01T02:00:01Z", "end=2018-11-01T02:00:01 must fall on a whole UTC hour"),
])
def test_a_refused_window_says_which_bound_and_why(start, end, message):
    # The message is what an operator reads in the failed task's log: the bound, as UTC, and the rule.
    with pytest.raises(WindowError) as refused:
        Window.of(start, end)
    assert message in str(refused.value)
