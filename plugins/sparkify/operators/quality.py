"""common.sql's check operators, with the report an operator needs when a check fails.

Both log a table of every check (expected, actual, pass/fail). When checks fail, the task's
error lists each failing check with its SQL, the expected and actual values, and a few
offending rows from the checked window.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.sql.operators.sql import SQLColumnCheckOperator, SQLTableCheckOperator
from airflow.sdk.exceptions import AirflowException

SAMPLE_ROWS = 5
EXPECTATIONS = {"equal_to": "=", "greater_than": ">", "geq_to": ">=", "less_than": "<", "leq_to": "<="}


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(value)) for value in column) for column in zip(header, *rows)]
    lines = [header, tuple("-" * width for width in widths), *rows]
    return "\n".join("  ".join(str(value).ljust(width) for value, width in zip(line, widths)).rstrip() for line in lines)


class _ReportMixin:
    """Runs the provider's checks, logs the results table and, when some fail, raises an
    error explaining each failing check."""

    def _where(self, condition: str | None = None) -> str:
        clauses = [clause for clause in (self.partition_clause, condition) if clause]
        return f" WHERE {' AND '.join(f'({clause})' for clause in clauses)}" if clauses else ""

    def _explain(self, name: str, sql: str, expected: Any, actual: Any, offending_sql: str) -> str:
        """One failing check: its SQL, expected and actual values, and a few offending rows."""
        offending_sql = f"{offending_sql} LIMIT {SAMPLE_ROWS}"
        rows = self.get_db_hook().get_records(offending_sql)
        shown = "\n".join(f"    {row}" for row in rows) or "    (none found)"
        return (f"FAILED {name}: expected {expected}, actual {actual}\n  SQL: {sql}\n"
                f"  offending rows (at most {SAMPLE_ROWS}): {offending_sql}\n{shown}")

    def execute(self, context: Any) -> None:
        try:
            super().execute(context)
        except AirflowException as err:
            failures = self._failures()
            self._log_report()
            if not failures:  # e.g. the check query returned no rows: the provider's error says it
                raise
            # The task log shows this error in full, with the provider's chained as its cause.
            raise type(err)(f"{len(failures)} failing check(s) on {self.table}:\n" + "\n".join(failures)) from err
        self.log.info("%s: all %d checks passed", self.table, self._log_report())

    def _log_report(self) -> int:
        report = self._report_rows()
        if report:
            self.log.info("Checks on %s:\n%s", self.table, format_table(report, ("check", "expected", "actual", "result")))
        return len(report)


class ColumnChecksOperator(_ReportMixin, SQLColumnCheckOperator):
    """``SQLColumnCheckOperator`` that reports every check and explains failing ones."""

    def _results(self):
        for column, checks in self.column_mapping.items():
            for check, values in checks.items():
                if "success" in values:
                    expected = ", ".join(f"{op} {values[key]}" for key, op in EXPECTATIONS.items() if key in values)
                    yield column, check, expected, values

    def _report_rows(self) -> list[tuple[str, ...]]:
        return [(f"{column}.{check}", expected, str(values["result"]), "pass" if values["success"] else "FAIL")
                for column, check, expected, values in self._results()]

    def _failures(self) -> list[str]:
        failures = []
        for column, check, expected, values in self._results():
            if values["success"]:
                continue
            sql = f"SELECT {self.column_checks[check].format(column=column)} FROM {self.table}{self._where()}"
            if check == "unique_check":
                offending = (f"SELECT {column}, COUNT(*) AS copies FROM {self.table}{self._where()} "
                             f"GROUP BY {column} HAVING COUNT(*) > 1 ORDER BY copies DESC")
            else:
                offending = f"SELECT * FROM {self.table}{self._where(f'{column} IS NULL')}"
            failures.append(self._explain(f"{self.table}.{column}.{check}", sql, expected, values["result"], offending))
        return failures


class TableChecksOperator(_ReportMixin, SQLTableCheckOperator):
    """
    ``SQLTableCheckOperator`` whose checks are measures, declared as data:

    * ``row_checks``: a condition every row in the partition must meet; the measure is the
      number of rows that don't (expected 0), and the offending rows are those rows;
    * ``checks``: ``actual`` (an aggregate over the partition) must equal ``expected`` (a
      scalar query); ``offending`` queries rows that explain a difference.

    The provider runs every check in one query; a failing check's values and rows are queried
    only when it fails.
    """

    template_fields = (*SQLTableCheckOperator.template_fields, "measures")

    def __init__(self, *, table: str, row_checks: dict[str, str] | None = None, checks: dict | None = None,
                 partition_clause: str | None = None, **kwargs: Any):
        where = f" WHERE ({partition_clause}) AND" if partition_clause else " WHERE"
        self.measures = {
            name: {
                "description": condition,
                # CASE, not NOT (...): a row where the condition is NULL doesn't meet it either.
                "actual": f"COUNT(CASE WHEN {condition} THEN NULL ELSE 1 END)",
                "expected": "0",
                "offending": f"SELECT * FROM {table}{where} (CASE WHEN {condition} THEN 0 ELSE 1 END) = 1",
            }
            for name, condition in (row_checks or {}).items()
        }
        self.measures.update(checks or {})
        super().__init__(
            table=table, partition_clause=partition_clause,
            checks={name: {"check_statement": f"{m['actual']} = {m['expected']}"} for name, m in self.measures.items()},
            **kwargs,
        )

    def _build_check_results(self, records: Any) -> list:
        # The provider's results feed OpenLineage's data-quality facets: describe each check
        # by what it measures rather than the provider's generic wording.
        results = super()._build_check_results(records)
        for result in results:
            if result.name in self.measures:
                result.description = self.measures[result.name]["description"]
        return results

    def _report_rows(self) -> list[tuple[str, ...]]:
        rows = []
        for name, values in self.checks.items():
            if "success" not in values:
                continue
            # A passing check measured actual = expected; _failures measured the failing ones.
            passed = ("0", "0") if self.measures[name]["expected"] == "0" else ("expected", "equal")
            expected, actual = values.get("measured", passed)
            rows.append((name, f"= {expected}", str(actual), "pass" if values["success"] else "FAIL"))
        return rows

    def _failures(self) -> list[str]:
        failures = []
        for name, values in self.checks.items():
            if values.get("success", True):
                continue
            measure = self.measures[name]
            sql = f"SELECT {measure['expected']} AS expected, {measure['actual']} AS actual FROM {self.table}{self._where()}"
            expected, actual = self.get_db_hook().get_first(sql) or (None, None)
            values["measured"] = (expected, actual)
            failures.append(self._explain(f"{self.table}.{name} ({measure['description']})", sql, f"= {expected}",
                                          actual, measure["offending"]))
        return failures
