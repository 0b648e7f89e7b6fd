"""Load the star schema from staging with SQL templates from ``include/sql/load``."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk import BaseOperator

from sparkify.operators.warehouse_sql import DialectContextMixin
from sparkify.warehouse import Warehouse, split_statements
from sparkify.window import WindowError, hours_in_window, resolve_window

if TYPE_CHECKING:
    from airflow.sdk import Context

DIMENSION_MODES = ("merge", "truncate-insert")


class _WindowLoadOperator(DialectContextMixin, BaseOperator):
    """Runs one SQL template in one transaction, with the run's window bound as parameters."""

    template_fields: Sequence[str] = ("sql", "window_start", "window_end")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}
    warehouse_conn_attr = "redshift_conn_id"

    def __init__(
        self,
        *,
        table: str,
        sql: str,
        window_start: str,
        window_end: str,
        redshift_conn_id: str = "redshift_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.sql = sql
        self.window_start = window_start
        self.window_end = window_end
        self.redshift_conn_id = redshift_conn_id

    @cached_property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.redshift_conn_id)

    def _window_parameters(self, context: Context) -> dict[str, Any]:
        try:
            window_start, window_end = resolve_window(self.window_start, self.window_end)
        except WindowError as err:
            raise AirflowFailException(str(err)) from None
        return {"window_start": window_start, "window_end": window_end, "run_id": context["run_id"]}

    def _run(self, cursor: Any, sql: str, parameters: dict[str, Any]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for statement in split_statements(sql):
            cursor.execute(statement, parameters)
            verb = statement.lstrip().split(None, 1)[0].upper()
            if verb in ("INSERT", "UPDATE", "DELETE") and cursor.rowcount is not None and cursor.rowcount >= 0:
                counts[verb] = counts.get(verb, 0) + cursor.rowcount
        return counts

    def _log_counts(self, counts: dict[str, int], parameters: dict[str, Any]) -> None:
        self.log.info(
            "%s [%s, %s): %d deleted, %d inserted, %d updated",
            self.table, parameters["window_start"].isoformat(), parameters["window_end"].isoformat(),
            counts.get("DELETE", 0), counts.get("INSERT", 0), counts.get("UPDATE", 0),
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
        with self.warehouse.transaction() as cursor:
            counts = self._run(cursor, self.sql, parameters)
            if self.record_hours_sql:
                loaded_at = datetime.now(timezone.utc).replace(tzinfo=None)
                for hour in hours_in_window(parameters["window_start"], parameters["window_end"]):
                    cursor.execute(self.record_hours_sql, {**parameters, "hour_start": hour, "loaded_at": loaded_at})
        self._log_counts(counts, parameters)
        if not counts.get("INSERT"):
            self.log.info("%s: no rows in this window (an empty hour is fine)", self.table)
        return counts


class LoadDimensionOperator(_WindowLoadOperator):
    """
    Load a dimension table in one transaction.

    ``mode='merge'`` upserts on the key the rows the window touches; ``'truncate-insert'``
    rebuilds the table. The SQL template branches on ``mode``.
    """

    template_fields: Sequence[str] = (*_WindowLoadOperator.template_fields, "mode")
    ui_color = "#80BD9E"

    def __init__(self, *, mode: str = "merge", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        # The SQL file branches on the mode, so render the mode first.
        self.mode = self.render_template(self.mode, context, jinja_env)
        if self.mode not in DIMENSION_MODES:
            raise AirflowFailException(f"mode {self.mode!r} must be one of {', '.join(DIMENSION_MODES)}")
        context["mode"] = self.mode
        super().render_template_fields(context, jinja_env)

    def execute(self, context: Context) -> dict[str, int]:
        parameters = self._window_parameters(context)
        with self.warehouse.transaction() as cursor:
            counts = self._run(cursor, self.sql, parameters)
        self.log.info("%s: mode %s", self.table, self.mode)
        self._log_counts(counts, parameters)
        return counts
