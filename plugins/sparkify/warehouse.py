"""The warehouse connection: which SQL dialect it speaks and how we run statements on it.

Operators pick the Redshift or PostgreSQL path from the Airflow connection's type,
so switching targets is a matter of changing the connection, not the DAG.
"""

from __future__ import annotations

import logging
from contextlib import closing, contextmanager
from functools import cached_property
from typing import Any, Iterator

from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger(__name__)

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


def describe(statement: str) -> str:
    """A short label such as ``INSERT INTO songplays`` for logging a statement."""
    words = " ".join(line for line in statement.splitlines() if not line.lstrip().startswith("--")).split()
    if not words:
        return ""
    verb = words[0].upper()
    target = {"INSERT": 2, "DELETE": 2, "UPDATE": 1, "MERGE": 2, "TRUNCATE": 1}.get(verb)
    if target is not None and len(words) > target:
        return f"{verb} {words[target]}"
    return " ".join(words[:3])


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
    def hook(self) -> DbApiHook:
        if self.dialect == "redshift":
            from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

            return RedshiftSQLHook(redshift_conn_id=self.conn_id)
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

    def run_script(self, sql: str, parameters: dict | None = None, *, logger: logging.Logger = log) -> list[tuple[str, int]]:
        """Run every statement of a rendered SQL file in one transaction; log and return row counts."""
        counts = []
        with self.transaction() as cursor:
            for statement in split_statements(sql):
                cursor.execute(statement, parameters or None)
                label = describe(statement)
                if cursor.rowcount is not None and cursor.rowcount >= 0 and label.split()[0] in {
                    "INSERT", "DELETE", "UPDATE", "MERGE",
                }:
                    logger.info("%-40s %10d rows", label, cursor.rowcount)
                    counts.append((label, cursor.rowcount))
        return counts
