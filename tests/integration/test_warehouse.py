"""The warehouse connection on the test PostgreSQL: a session's transactions share one
connection, and share it safely."""

from __future__ import annotations

import pytest

from sparkify.catalog import WAREHOUSE_CONN_ID
from sparkify.warehouse import Warehouse

BACKEND = "SELECT pg_backend_pid()"


def backend(warehouse: Warehouse) -> int:
    return warehouse.get_records(BACKEND)[0][0]


def test_a_session_runs_its_transactions_on_one_connection(servers):
    warehouse = Warehouse(WAREHOUSE_CONN_ID)
    with warehouse.session():
        inside = {backend(warehouse) for _ in range(3)}
        with warehouse.transaction() as cursor:
            cursor.execute(BACKEND)
            inside.add(cursor.fetchone()[0])
    assert len(inside) == 1
    # Without a session each transaction connects anew (server process ids are not reused at once).
    outside = {backend(warehouse) for _ in range(3)}
    assert len(outside) == 3 and not outside & inside


def test_a_transaction_inside_another_gets_its_own_connection(servers):
    """Nested, the inner transaction must not commit or roll back the outer one's work."""
    warehouse = Warehouse(WAREHOUSE_CONN_ID)
    with warehouse.session():
        with warehouse.transaction() as outer:
            outer.execute(BACKEND)
            outer_backend = outer.fetchone()[0]
            outer.execute("CREATE TEMP TABLE nested_probe (id int)")
            assert backend(warehouse) != outer_backend
            outer.execute("SELECT count(*) FROM nested_probe")  # still the outer's transaction
            assert outer.fetchone()[0] == 0
        # The session's connection is back for the next transaction.
        assert backend(warehouse) == outer_backend


def test_a_failed_transaction_rolls_back_and_the_session_goes_on(servers):
    warehouse = Warehouse(WAREHOUSE_CONN_ID)
    with warehouse.session():
        with warehouse.transaction() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS session_probe (id int)")
            cursor.execute("TRUNCATE session_probe")
        with pytest.raises(ZeroDivisionError):
            with warehouse.transaction() as cursor:
                cursor.execute("INSERT INTO session_probe VALUES (1)")
                raise ZeroDivisionError
        with pytest.raises(Exception, match="division by zero"):
            warehouse.get_records("SELECT 1 / 0")
        assert warehouse.get_records("SELECT count(*) FROM session_probe") == [(0,)]
        with warehouse.transaction() as cursor:
            cursor.execute("DROP TABLE session_probe")
