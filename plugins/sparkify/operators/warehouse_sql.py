"""SQL templates that know which warehouse they run on."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

from sparkify.warehouse import Warehouse


class DialectContextMixin:
    """Adds ``dialect`` ('postgres' or 'redshift', from the connection type) to the template
    context, so SQL files express dialect differences in Jinja rather than in Python."""

    warehouse_conn_attr = "conn_id"

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        context["dialect"] = Warehouse(getattr(self, self.warehouse_conn_attr)).dialect
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]


class WarehouseSQLOperator(DialectContextMixin, SQLExecuteQueryOperator):
    """``SQLExecuteQueryOperator`` whose SQL files can branch on ``dialect``."""
