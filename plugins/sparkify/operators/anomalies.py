"""The anomaly checks (``sparkify.anomalies``) as one task: the window against its trailing days."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from sparkify.warehouse import Warehouse
from sparkify.window import resolve_window

if TYPE_CHECKING:
    from airflow.sdk import Context


class AnomalyChecksOperator(BaseOperator):
    """
    Compare the run's window with the trailing days: the share of NextSong events carrying a
    user, songplays per staged NextSong event, and each staged column's non-null share. A drop
    beyond ``drop_factor`` fails the task; the error names each metric, its value in the window
    and its baseline. An empty or first-ever window passes.

    :param window_start: first hour of the window (UTC).
    :param window_end: end of the window, exclusive.
    :param baseline_days: the baseline is the days before the window start, this many.
    :param drop_factor: a metric fails below its baseline divided by this (>= 1).
    :param min_expected: a metric is judged only when the baseline predicts at least this many
        counts in the window.
    :param conn_id: the warehouse connection.
    """

    template_fields: Sequence[str] = ("window_start", "window_end", "baseline_days", "drop_factor", "min_expected")
    ui_color = "#f4d35e"

    def __init__(self, *, window_start: str, window_end: str, baseline_days: float | str = 7,
                 drop_factor: float | str = 2.0, min_expected: float | str = 20,
                 conn_id: str = "redshift_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.window_start = window_start
        self.window_end = window_end
        self.baseline_days = baseline_days
        self.drop_factor = drop_factor
        self.min_expected = min_expected
        self.conn_id = conn_id

    @cached_property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from sparkify.anomalies import check_anomalies, failure_report, report_rows
        from sparkify.operators.quality import format_table

        window = resolve_window(self.window_start, self.window_end)
        try:
            baseline_days, drop_factor, min_expected = (
                float(self.baseline_days), float(self.drop_factor), float(self.min_expected))
            results, baseline_start = check_anomalies(self.warehouse.get_records, self.warehouse.dialect, *window,
                                                      baseline_days, drop_factor, min_expected)
        except ValueError as err:
            raise AirflowFailException(f"anomaly checks: {err}") from None
        self.log.info(
            "Anomaly checks, window [%s, %s) against the baseline [%s, %s) (fails below baseline / %g, judged "
            "when at least %g expected):\n%s", *window, baseline_start, window[0], drop_factor, min_expected,
            format_table(report_rows(results, drop_factor), ("metric", "window", "baseline", "fails below", "result")))
        failed = [result for result in results if result.failed]
        if failed:
            raise AirflowException(failure_report(results, drop_factor, window, baseline_start))
        self.log.info("anomaly checks: all %d passed", len(results))
        return {"checks": len(results), "judged": sum(result.status in ("pass", "FAIL") for result in results)}
