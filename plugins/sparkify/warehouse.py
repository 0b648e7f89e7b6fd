"""The warehouse connection: which SQL dialect it speaks and how we run statements on it.

Operators pick the Redshift or PostgreSQL path from the Airflow connection's type,
so switching targets is a matter of changing the connection, not the DAG.
"""

from __future__ import annotations

from contextlib import closing, contextmanager
from functools import cached_property
from typing import Any, Iterator

from airflow.providers.common.sql.hooks.sql import DbApiHook

from sparkify.catalog import AWS_CONN_ID

DIALECTS = {"postgres": "postgres", "redshift": "redshift"}


class UnsupportedWarehouse(ValueError):
    """The warehouse connection's type is neither postgres nor redshift."""


def dialect_for(conn_type: str) -> str:
    try:
        return DIALECTS[conn_type]
    except KeyError:
        raise UnsupportedWarehouse(
            f"warehouse connection type {conn_type!r} is not supported; use 'postgres' or 'redshift'"
        ) from None


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
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction: committed if the block succeeds, rolled back if not."""
        with closing(self.hook.get_conn()) as conn:
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

    def get_records(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        """Rows of one query, with values bound the same way on both dialects."""
        with self.transaction() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()


class DialectContextMixin:
    """Adds ``dialect`` ('postgres' or 'redshift', from the connection type) to an operator's
    template context, so SQL files express dialect differences in Jinja rather than in Python."""

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        context["dialect"] = Warehouse(self.conn_id).dialect
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]
