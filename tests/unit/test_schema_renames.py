"""sparkify.schema.rename_old_columns on its own, against a cursor that records what it is sent
(the renames on PostgreSQL: tests/integration/test_schema_upgrade.py; on Redshift's stand-in:
tests/redshift/test_redshift_sql.py)."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from sparkify.catalog import CREATE_ORDER, RENAMED_COLUMNS
from sparkify.schema import rename_old_columns


class Cursor:
    """Answers the look-up of old columns with ``rows``; records every statement."""

    def __init__(self, rows):
        self.rows, self.sent = rows, []

    def execute(self, statement, parameters=None):
        self.sent.append((statement, parameters))

    def fetchall(self):
        return self.rows


def render(template, **names):
    return f"{template} {sorted(names.items())}" if names else template


def rename(table, old, new):
    return render("schema/rename_column.sql", renamed_table=table, old_column=old, new_column=new)


def test_only_the_old_columns_found_are_renamed_in_list_order():
    """The look-up binds every old name as one ',table.column,' list; a column renamed twice
    (a to b, then b to c) gets both renames; an old column not found is left alone."""
    cursor = Cursor([("t", "a"), ("v", "p")])
    renames = (("t", "a", "b"), ("t", "b", "c"), ("u", "x", "y"), ("v", "p", "q"))
    assert rename_old_columns(cursor, render, renames) == [("t", "a", "b"), ("t", "b", "c"), ("v", "p", "q")]
    assert cursor.sent == [("schema/columns_to_rename.sql", {"old_columns": ",t.a,t.b,u.x,v.p,"}),
                           (rename("t", "a", "b"), None), (rename("t", "b", "c"), None), (rename("v", "p", "q"), None)]


def test_nothing_to_rename_sends_only_the_look_up():
    cursor = Cursor([])
    assert rename_old_columns(cursor, render) == []
    assert [statement for statement, _ in cursor.sent] == ["schema/columns_to_rename.sql"]
    assert rename_old_columns(Cursor([]), render, ()) == []


@pytest.mark.parametrize("bad", [("t", 'a"; DROP TABLE users; --', "b"), ("t", "a", "B"), ("t.u", "a", "b"),
                                 ("t", "a,b", "c")])
def test_names_must_be_plain_identifiers_before_anything_is_sent(bad):
    cursor = Cursor([])
    with pytest.raises(AirflowFailException, match="not a plain lower-case SQL identifier"):
        rename_old_columns(cursor, render, (("t", "ok", "fine"), bad))
    assert cursor.sent == []


def test_renamed_columns_name_tables_the_ddl_creates():
    assert RENAMED_COLUMNS and {table for table, _, _ in RENAMED_COLUMNS} <= set(CREATE_ORDER)
    assert all(old != new for _, old, new in RENAMED_COLUMNS)
