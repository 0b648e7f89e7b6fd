"""Data-quality checks, every table's in one task, with the report an operator needs.

The checks are data (``sparkify.quality.QUALITY_CHECKS``); their SQL follows common.sql's
check operators: the column checks use ``SQLColumnCheckOperator``'s own expressions, and each
table's checks run as one query, as ``SQLTableCheckOperator`` runs them. One task for all of
them costs one task process per run instead of one per table (Airflow's fixed cost per task is
most of a check's time). The log shows a table of every check (expected, actual, pass/fail);
when checks fail, the error lists each failing check with its SQL, the expected and actual
values, and a few offending rows. The results feed OpenLineage's data-quality facets, as the
provider's operators' do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from airflow.providers.common.sql.operators.sql import BaseSQLOperator, SQLCheckResult, SQLColumnCheckOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from sparkify.lineage import PLACEHOLDER
from sparkify.warehouse import WarehouseOperatorMixin
from sparkify.window import Window, run_window

SAMPLE_ROWS = 5
# The common.sql column checks whose offending rows include/sql/checks/offending_rows.sql lists.
COLUMN_CHECKS = ("null_check", "unique_check")


@dataclass(frozen=True)
class Check:
    """One check on a table: ``actual`` (an aggregate over the checked rows) must equal
    ``expected`` (a scalar SQL expression). A column check names its ``column``, a row check its
    ``condition``; a reconciliation lists the rows that explain a failure with ``offending``."""

    table: str
    name: str
    check_type: str
    description: str
    actual: str
    expected: str
    column: str | None = None
    condition: str | None = None
    offending: str | None = None


def table_checks(table: str, spec: dict) -> list[Check]:
    """The checks ``spec`` declares on ``table`` (see sparkify.quality). A column check is one of
    ``COLUMN_CHECKS`` with an ``equal_to`` condition, as common.sql writes them; any other raises
    ``ValueError``."""
    checks = []
    for column, kinds in spec.get("columns", {}).items():
        for kind, condition in kinds.items():
            if kind not in COLUMN_CHECKS or set(condition) != {"equal_to"}:
                raise ValueError(f"check {table}.{column}.{kind} {condition}: a column check is one of "
                                 f"{', '.join(COLUMN_CHECKS)} with an equal_to condition")
            checks.append(Check(table, f"{column}.{kind}", kind.removesuffix("_check"), f"{column} {kind}",
                                SQLColumnCheckOperator.column_checks[kind].format(column=column),
                                str(int(condition["equal_to"])), column=column))
    for name, condition in spec.get("rows", {}).items():
        # CASE, not NOT (...): a row where the condition is NULL doesn't meet it either.
        checks.append(Check(table, name, "row_condition", condition,
                            f"COUNT(CASE WHEN {condition} THEN NULL ELSE 1 END)", "0", condition=condition))
    for name, measure in spec.get("table", {}).items():
        checks.append(Check(table, name, "reconciliation", measure["description"], measure["actual"],
                            measure["expected"], offending=measure["offending"]))
    return checks


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(value)) for value in column) for column in zip(header, *rows)]
    lines = [header, tuple("-" * width for width in widths), *rows]
    return "\n".join("  ".join(str(value).ljust(width) for value, width in zip(line, widths)).rstrip() for line in lines)


class QualityChecksOperator(WarehouseOperatorMixin, BaseSQLOperator):
    """
    Run the data-quality checks of several tables, each table's checks in one query.

    :param checks: per table, ``columns`` (column -> common.sql column checks, expected 0),
        ``rows`` (conditions every checked row must meet) and ``table`` (aggregates that must
        equal an expected scalar); see sparkify.quality.
    :param windowed: check only the run's window of the tables that name a ``window_column``
        (and their rows where it is NULL, which no window holds); the checks' SQL may bind the
        window (``%(window_start)s``, ``%(window_end)s``). Off, no window is computed at all
        (the audit runs on a daily schedule over all loaded hours).
    :param anomalies: also compare the window with its trailing days (sparkify.anomalies):
        ``baseline_days``, ``drop_factor`` and ``min_expected``.
    """

    template_fields: Sequence[str] = (*BaseSQLOperator.template_fields, "checks", "anomalies")
    ui_color = "#d7e8f7"

    def __init__(self, *, checks: dict[str, dict], windowed: bool = True, anomalies: dict | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checks = checks
        self.windowed = windowed
        self.anomalies = anomalies
        for table, spec in checks.items():
            table_checks(table, spec)  # an unsupported check fails the DAG's import, not a run
        self.window_columns = {table: spec["window_column"]
                               for table, spec in checks.items() if windowed and "window_column" in spec}
        self.sql: list[str] = []  # the queries run: OpenLineage reads their tables as inputs

    def execute(self, context: Any) -> dict[str, Any]:
        # The run's window and id, bound into the checks' SQL.
        window = run_window(context) if self.windowed else None
        parameters = {**(window.parameters() if window else {}), "run_id": context["run_id"]}
        failures: list[str] = []
        with self.warehouse.session():
            for table, spec in self.checks.items():
                failing = self._check_table(table_checks(table, spec), parameters)
                if failing:
                    failures.append(f"{len(failing)} failing check(s) on {table}:\n" + "\n".join(failing))
            anomalies = self._check_anomalies(window, failures) if self.anomalies and window else None
        if failures:
            raise AirflowException("\n".join(failures))
        self.log.info("all %d checks passed on %s", len(self.check_results), ", ".join(self.checks))
        return {"checks": len(self.check_results), "anomalies": anomalies}

    def table_query(self, table: str, checks: list[Check]) -> str:
        """The one query that measures every check of ``table`` (include/sql/checks/table_checks.sql)."""
        return self.render_sql("checks/table_checks.sql", table=table, checks=checks,
                               window_column=self.window_columns.get(table))

    def check_query(self, check: Check) -> str:
        """``check`` as a query of its own, as reports show it (include/sql/checks/check.sql)."""
        return self.render_sql("checks/check.sql", check=check, window_column=self.window_columns.get(check.table))

    def offending_query(self, check: Check) -> str:
        """A few rows that explain why ``check`` failed (include/sql/checks/offending_rows.sql)."""
        return self.render_sql("checks/offending_rows.sql", check=check, sample_rows=SAMPLE_ROWS,
                               window_column=self.window_columns.get(check.table))

    def get_db_hook(self) -> Any:
        # The hook our other operators use, built from the connection type directly: common.sql's
        # lookup through the providers manager costs a second or more per task process.
        return self.warehouse.hook

    def _check_table(self, checks: list[Check], parameters: dict[str, Any]) -> list[str]:
        """Measure one table's checks, log them as a table, and record each as a ``SQLCheckResult``.
        Returns the report of each failing check."""
        table = checks[0].table
        query = self.table_query(table, checks)
        # The provider's SQL parser reads no driver placeholders: NULL stands in for each.
        self.sql.append(PLACEHOLDER.sub("NULL", query))
        (row,) = self.warehouse.get_records(query, parameters)
        report, failing = [], []
        for index, check in enumerate(checks):
            actual, expected = row[2 * index], row[2 * index + 1]
            if actual is None and check.column:  # SUM over no rows: an empty window has no nulls
                actual = 0
            success = actual == expected
            sql = self.check_query(check)
            report.append((check.name, f"= {expected}", str(actual), "pass" if success else "FAIL"))
            self.check_results.append(SQLCheckResult(
                name=check.name, check_type=check.check_type, success=success, column=check.column, table=table,
                expected=f"= {expected}", actual=str(actual), description=check.description, content=sql,
            ))
            if not success:
                failing.append(self._explain(check, expected, actual, sql, parameters))
        self.log.info("Checks on %s:\n%s", table, format_table(report, ("check", "expected", "actual", "result")))
        return failing

    def _check_anomalies(self, window: Window, failures: list[str]) -> dict[str, int]:
        """The window's metrics against the trailing days; a failing one adds its report to
        ``failures``. Returns how many metrics there are and how many had enough history to be judged."""
        from sparkify.anomalies import check_anomalies, failure_report, report_rows

        settings = self.anomalies
        try:
            drop_factor = float(settings["drop_factor"])
            results, baseline_start = check_anomalies(
                self.warehouse.get_records, self.render_sql, window.start, window.end,
                float(settings["baseline_days"]), drop_factor, float(settings["min_expected"]))
        except ValueError as err:
            raise AirflowFailException(f"anomaly checks: {err}") from None
        self.log.info(
            "Anomaly checks, window [%s, %s) against the baseline [%s, %s) (fails below baseline / %g):\n%s",
            window.start, window.end, baseline_start, window.start, drop_factor,
            format_table(report_rows(results, drop_factor), ("metric", "window", "baseline", "fails below", "result")))
        if any(result.failed for result in results):
            failures.append(failure_report(results, drop_factor, (window.start, window.end), baseline_start))
        else:
            self.log.info("anomaly checks: all %d passed", len(results))
        return {"metrics": len(results), "judged": sum(result.status in ("pass", "FAIL") for result in results)}

    def _explain(self, check: Check, expected: Any, actual: Any, sql: str, parameters: dict[str, Any]) -> str:
        """One failing check: its SQL, expected and actual values, and a few offending rows."""
        offending = self.offending_query(check)
        rows = self.warehouse.get_records(offending, parameters)
        shown = "\n".join(f"    {row}" for row in rows) or "    (none found)"
        title = f"{check.table}.{check.name}" + ("" if check.column else f" ({check.description})")
        return (f"FAILED {title}: expected = {expected}, actual {actual}\n  SQL: {sql}\n"
                f"  offending rows (at most {SAMPLE_ROWS}): {offending}\n{shown}")
