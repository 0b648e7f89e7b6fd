"""The warehouse connection: which SQL dialect it speaks and how we run statements on it.

Operators pick the Redshift or PostgreSQL path from the Airflow connection's type,
so switching targets is a matter of changing the connection, not the DAG.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from functools import cached_property
from typing import Any, Iterator

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk.exceptions import AirflowFailException

from sparkify.catalog import AWS_CONN_ID

DIALECTS = {"postgres": "postgres", "redshift": "redshift"}
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# More than the templates one task renders (include/sql holds about 60).
TEMPLATE_CACHE_SIZE = 200


class UnsupportedWarehouse(ValueError):
    """The warehouse connection's type is neither postgres nor redshift."""


def dialect_for(conn_type: str) -> str:
    try:
        return DIALECTS[conn_type]
    except KeyError:
        raise UnsupportedWarehouse(
            f"warehouse connection type {conn_type!r} is not supported; use 'postgres' or 'redshift'"
        ) from None


def validate_identifier(name: str, what: str) -> str:
    """``name``, checked to be a plain lower-case SQL identifier: names that go into a statement's
    text (tables, columns) rather than bound as values."""
    if not IDENTIFIER.match(name):
        raise AirflowFailException(f"{what} {name!r} is not a plain lower-case SQL identifier")
    return name


def split_statements(sql: str) -> list[str]:
    """Split a rendered SQL file into statements, dropping comment-only pieces."""
    return [statement for statement in DbApiHook.split_sql_string(sql, strip_semicolon=True) if statement.strip()]


def first_code_line(statement: str) -> str:
    """A statement's first line that isn't a comment: it says what the statement does."""
    return next((line.strip() for line in statement.splitlines()
                 if line.strip() and not line.lstrip().startswith("--")), "")


class Warehouse:
    """The hook for one warehouse connection, plus the dialect its SQL templates use."""

    def __init__(self, conn_id: str):
        self.conn_id = conn_id
        self._held: Any = None  # the open session's connection, while no transaction uses it
        self._lock = threading.Lock()

    @cached_property
    def connection(self):
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(self.conn_id)

    @cached_property
    def dialect(self) -> str:
        return dialect_for(self.connection.conn_type)

    @cached_property
    def serverless(self) -> bool:
        """A Redshift Serverless workgroup (the Redshift hook's ``is_serverless`` extra): its
        load history is in the SYS views, not the STL views of a provisioned cluster."""
        return self.dialect == "redshift" and bool(self.connection.extra_dejson.get("is_serverless", False))

    @cached_property
    def hook(self) -> DbApiHook:
        if self.dialect == "redshift":
            from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

            # With IAM auth the hook gets the temporary database credentials through the pipeline's
            # AWS connection, so production needs that and the warehouse connection, nothing else.
            return RedshiftSQLHook(redshift_conn_id=self.conn_id, aws_conn_id=AWS_CONN_ID)
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.conn_id)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Run the block's transactions on one connection, closed at the end. A task makes many
        short ones (ledger reads, one query per checked table), and each connect costs a round
        trip, plus a credentials call to AWS with Redshift's IAM auth. A transaction opened
        while another holds the session's connection gets a connection of its own."""
        conn = self.hook.get_conn()
        with self._lock:
            self._held = conn
        try:
            yield
        finally:
            with self._lock:
                self._held = None
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction: committed if the block succeeds, rolled back if not."""
        with self._lock:
            conn, self._held = self._held, None
        own = conn is None
        if own:
            conn = self.hook.get_conn()
        try:
            conn.autocommit = False
            cursor = conn.cursor()
            if self.dialect == "redshift":
                # Our SQL files bind values as %(name)s, psycopg's default style.
                cursor.paramstyle = "pyformat"
            try:
                yield cursor
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()
        finally:
            if own:
                conn.close()
            else:
                with self._lock:
                    self._held = conn

    def get_records(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        """Rows of one query, with values bound the same way on both dialects."""
        with self.transaction() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()


class WarehouseOperatorMixin:
    """For operators with a warehouse connection ``conn_id``: the ``Warehouse``, ``dialect``
    ('postgres' or 'redshift', from the connection type) in the template context so SQL files
    express dialect differences in Jinja rather than in Python, and ``render_sql`` for the
    templates an operator renders while it runs."""

    conn_id: str

    @cached_property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.conn_id)

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        context["dialect"] = self.warehouse.dialect
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]

    @cached_property
    def sql_templates(self) -> Any:
        """The task's Jinja environment, with a template cache, for the templates it renders while
        it runs: Airflow's has none (``cache_size=0``) and is built anew on each call, so every
        render would compile its template and the ``macros.sql`` it imports again (about 50 ms).
        A task outside a DAG (no template search path) reads include/sql."""
        if self.has_dag():  # type: ignore[attr-defined]
            return self.get_template_env().overlay(cache_size=TEMPLATE_CACHE_SIZE)  # type: ignore[attr-defined]
        import jinja2

        from sparkify.dag_defaults import SQL_DIR

        return jinja2.Environment(loader=jinja2.FileSystemLoader(str(SQL_DIR)), undefined=jinja2.StrictUndefined,
                                  cache_size=TEMPLATE_CACHE_SIZE)

    def render_sql(self, template: str, **variables: Any) -> str:
        """An include/sql template, rendered with the task's template environment and the dialect."""
        return self.sql_templates.get_template(template).render(dialect=self.warehouse.dialect, **variables)
