"""Load the star schema from staging with SQL templates from ``include/sql/load``."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator

from sparkify.warehouse import WarehouseOperatorMixin, first_code_line, split_statements
from sparkify.window import run_window

if TYPE_CHECKING:
    from airflow.sdk import Context

WRITES = re.compile(r"(?:INSERT\s+INTO|DELETE\s+FROM|UPDATE)\s+(\w+)", re.IGNORECASE)


class _WindowLoadOperator(WarehouseOperatorMixin, BaseOperator):
    """Runs one SQL template in one transaction, with the run's window bound as parameters."""

    template_fields: Sequence[str] = ("sql",)
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}

    def __init__(
        self,
        *,
        table: str,
        sql: str,
        conn_id: str = "redshift_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.sql = sql
        self.conn_id = conn_id

    def _window_parameters(self, context: Context) -> dict[str, Any]:
        # WindowError is an AirflowFailException: a bad window fails the task without retries.
        return {**run_window(context).parameters(), "run_id": context["run_id"]}

    def _run(self, cursor: Any, sql: str, parameters: dict[str, Any], table: str) -> tuple[dict[str, int], list[tuple]]:
        """Run each statement of ``sql``, logging it with its row count. Returns the rows written
        to ``table`` per verb, and the rows of the last SELECT (a report for the log)."""
        counts: dict[str, int] = {}
        report: list[tuple] = []
        for statement in split_statements(sql):
            started = time.monotonic()
            cursor.execute(statement, parameters)
            first_line = first_code_line(statement)
            verb = first_line.split(None, 1)[0].upper()
            if verb == "SELECT":
                report = cursor.fetchall()
            rows = cursor.rowcount if verb in ("INSERT", "UPDATE", "DELETE") else None
            if rows is not None and rows >= 0:
                written = WRITES.match(first_line)
                if written and written.group(1).lower() == table:  # not the queues and temp tables
                    counts[verb] = counts.get(verb, 0) + rows
                self.log.info("%s: %s rows (%.2f s)", first_line[:100], f"{rows:,}", time.monotonic() - started)
            else:
                self.log.info("%s (%.2f s)", first_line[:100], time.monotonic() - started)
        return counts, report

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the tables the rendered SQL reads in and writes out."""
        from sparkify.lineage import sql_lineage

        sql = list(self.sql.values()) if isinstance(self.sql, dict) else [self.sql]
        return sql_lineage(self.warehouse, [*sql, *filter(None, [getattr(self, "record_hours_sql", None)])])

    def _log_counts(self, label: str, counts: dict[str, int], parameters: dict[str, Any]) -> None:
        self.log.info(
            "%s [%s, %s): %s deleted, %s inserted, %s updated",
            label, parameters["window_start"].isoformat(), parameters["window_end"].isoformat(),
            *(f"{counts.get(verb, 0):,}" for verb in ("DELETE", "INSERT", "UPDATE")),
        )


class LoadFactOperator(_WindowLoadOperator):
    """
    Replace a fact table's rows for the window [window_start, window_end) in one transaction.

    The same transaction records the window's hours in ``loaded_hours`` (``record_hours_sql``),
    so dimension loads know which events the star schema covers.
    """

    template_fields: Sequence[str] = (*_WindowLoadOperator.template_fields, "record_hours_sql")
    ui_color = "#F98866"

    def __init__(self, *, record_hours_sql: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.record_hours_sql = record_hours_sql

    def execute(self, context: Context) -> dict[str, int]:
        parameters = self._window_parameters(context)
        self.log.info("::group::Loading %s for [%s, %s)", self.table,
                      parameters["window_start"].isoformat(), parameters["window_end"].isoformat())
        parameters["loaded_at"] = datetime.now(timezone.utc).replace(tzinfo=None)
        try:
            with self.warehouse.transaction() as cursor:
                counts, refreshed = self._run(cursor, self.sql, parameters, self.table)
                if self.record_hours_sql:
                    recorded, _ = self._run(cursor, self.record_hours_sql, parameters, "loaded_hours")
                    self.log.info("loaded_hours: recorded %d hours as loaded", recorded.get("INSERT", 0))
        finally:
            self.log.info("::endgroup::")
        self._log_refreshed(refreshed, counts)
        self._log_counts(self.table, counts, parameters)
        if not counts.get("INSERT"):
            self.log.info("%s: no rows in this window (an empty hour is fine)", self.table)
        return counts


    def _log_refreshed(self, refreshed: list[tuple], counts: dict[str, int]) -> None:
        """Say which earlier hours this load re-derived because their staged events changed."""
        if refreshed:
            self.log.info("%s: refreshed %d earlier loaded hours whose staged events changed (stale_hours):",
                          self.table, len(refreshed))
            for hour, before, after, changes in refreshed[:24]:
                self.log.info("%s:   %s: %s staged rows replaced by %s (%d changes queued)", self.table,
                              f"{hour:%Y-%m-%d %H:00}", f"{before:,}", f"{after:,}", changes)
        if counts.get("UPDATE"):
            self.log.info("%s: re-matched %s loaded plays whose songs changed (stale_song_matches)",
                          self.table, f"{counts['UPDATE']:,}")


class LoadDimensionOperator(_WindowLoadOperator):
    """
    Load dimension tables, each in its own transaction, in the order given.

    ``sql`` maps each table to its template. The templates merge the rows the window touches
    on the key, or rebuild the table when the run's ``full_refresh`` param is on (``merge``
    macro in include/sql/macros.sql; ``time`` always merges: it only follows the loaded
    songplays). One task loads them all: each would cost a task process of its own for a few
    statements.
    """

    ui_color = "#80BD9E"

    def __init__(self, *, sql: dict[str, str], **kwargs: Any) -> None:
        super().__init__(table=", ".join(sql), sql=sql, **kwargs)

    def execute(self, context: Context) -> dict[str, dict[str, int]]:
        parameters = self._window_parameters(context)
        how = "full refresh" if context["params"].get("full_refresh") else "merge"
        loaded = {}
        with self.warehouse.session():
            for table, sql in self.sql.items():
                self.log.info("::group::Loading %s (%s) for [%s, %s)", table, how,
                              parameters["window_start"].isoformat(), parameters["window_end"].isoformat())
                try:
                    with self.warehouse.transaction() as cursor:
                        loaded[table], _ = self._run(cursor, sql, parameters, table)
                finally:
                    self.log.info("::endgroup::")
                self._log_counts(f"{table} ({how})", loaded[table], parameters)
        return loaded
