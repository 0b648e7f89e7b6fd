"""common.sql's check operators, with the report an operator needs when a check fails.

Both log a table of every check (expected, actual, pass/fail) and, for each failing check,
a few offending rows from the checked window.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.sql.operators.sql import SQLColumnCheckOperator, SQLTableCheckOperator

SAMPLE_ROWS = 5
EXPECTATIONS = ("equal_to", "greater_than", "geq_to", "less_than", "leq_to")


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(value)) for value in column) for column in zip(header, *rows)]
    lines = [header, tuple("-" * width for width in widths), *rows]
    return "\n".join("  ".join(str(value).ljust(width) for value, width in zip(line, widths)).rstrip() for line in lines)


class _ReportMixin:
    """Logs the results table, and offending rows on failure, around the provider's checks."""

    def _where(self, condition: str | None = None) -> str:
        clauses = [clause for clause in (self.partition_clause, condition) if clause]
        return f"WHERE {' AND '.join(f'({clause})' for clause in clauses)}" if clauses else ""

    def _log_samples(self, title: str, sql: str) -> None:
        hook = self.get_db_hook()
        rows = hook.get_records(sql)
        self.log.error("%s: %d offending row(s) shown\n  %s\n%s", title, len(rows), sql,
                       "\n".join(f"    {row}" for row in rows) or "    (none in the window)")

    def execute(self, context: Any) -> None:
        try:
            super().execute(context)
        finally:
            report = self._report_rows()
            if report:
                self.log.info("Checks on %s:\n%s", self.table, format_table(report, ("check", "expected", "actual", "result")))
        self.log.info("%s: all %d checks passed", self.table, len(report))


class ColumnChecksOperator(_ReportMixin, SQLColumnCheckOperator):
    """``SQLColumnCheckOperator`` that reports every check and samples offending rows."""

    def _report_rows(self) -> list[tuple[str, ...]]:
        rows, failures = [], []
        for column, checks in self.column_mapping.items():
            for check, values in checks.items():
                if "success" not in values:
                    continue
                expected = next(f"{key} {values[key]}" for key in EXPECTATIONS if key in values)
                rows.append((f"{column}.{check}", expected, str(values.get("result")), "pass" if values["success"] else "FAIL"))
                if not values["success"]:
                    failures.append((column, check))
        for column, check in failures:
            if check == "null_check":
                self._log_samples(f"{self.table}.{column} is NULL",
                                  f"SELECT * FROM {self.table} {self._where(f'{column} IS NULL')} LIMIT {SAMPLE_ROWS}")
            elif check == "unique_check":
                self._log_samples(
                    f"{self.table}.{column} duplicates",
                    f"SELECT {column}, COUNT(*) AS copies FROM {self.table} {self._where()} "
                    f"GROUP BY {column} HAVING COUNT(*) > 1 ORDER BY copies DESC LIMIT {SAMPLE_ROWS}",
                )
        return rows


class TableChecksOperator(_ReportMixin, SQLTableCheckOperator):
    """
    ``SQLTableCheckOperator`` for two kinds of checks, both declared as data:

    * ``row_checks``: a condition every row in the partition must meet (aggregated so an
      empty window passes); a failure logs a few rows that don't meet it;
    * ``checks``: the provider's own aggregate ``check_statement`` checks.
    """

    def __init__(self, *, row_checks: dict[str, str] | None = None, checks: dict | None = None, **kwargs: Any):
        self.row_checks = dict(row_checks or {})
        all_checks = {
            name: {"check_statement": f"COUNT(*) = COUNT(CASE WHEN {condition} THEN 1 END)"}
            for name, condition in self.row_checks.items()
        }
        all_checks.update(checks or {})
        super().__init__(checks=all_checks, **kwargs)

    def _report_rows(self) -> list[tuple[str, ...]]:
        rows = []
        for name, values in self.checks.items():
            if "success" not in values:
                continue
            expected = "every row" if name in self.row_checks else "true"
            rows.append((name, expected, "true" if values["success"] else "false", "pass" if values["success"] else "FAIL"))
            if not values["success"] and name in self.row_checks:
                condition = self.row_checks[name]
                self._log_samples(
                    f"{self.table}: rows failing {name} ({condition})",
                    f"SELECT * FROM {self.table} {self._where(f'CASE WHEN {condition} THEN 0 ELSE 1 END = 1')} LIMIT {SAMPLE_ROWS}",
                )
        return rows
