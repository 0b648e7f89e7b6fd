"""The warehouse's tables: created by the first run, and again only when their DDL changes.

Every ``include/sql/create/*.sql`` statement is idempotent (``IF NOT EXISTS``), but running them
all on every run costs a round of catalog locks on each run's critical path. So the DDL's
templates (and the macros they use), with the dialect they render for, are hashed into a version
recorded in ``schema_version``: while the recorded version is current a run reads one row and
moves on, without even rendering the DDL. An empty warehouse, or DDL that changed (a new table or
index), gets every statement, under a lock so that concurrent first runs don't race in the catalog.

``CREATE TABLE IF NOT EXISTS`` leaves an existing table as it is, so a column renamed in the DDL
would keep its old name in a deployed warehouse. Before the DDL, in its transaction and under its
lock, every column of ``RENAMED_COLUMNS`` the warehouse still has under its old name is renamed
(``ALTER TABLE ... RENAME COLUMN``, which keeps its rows): the DDL that follows, an index on the
column included, then finds the names it expects. A rename comes with a change to the DDL's text,
which is what makes a warehouse whose version is recorded run this branch again.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from typing import Any, Callable

from sparkify.catalog import CREATE_ORDER, RENAMED_COLUMNS
from sparkify.warehouse import Warehouse, split_statements, validate_identifier

log = logging.getLogger(__name__)


DDL_TEMPLATES = (*(f"create/{table}.sql" for table in CREATE_ORDER), "macros.sql")


def ddl_version(dialect: str, source: Callable[[str], str]) -> str:
    """The hash of the DDL templates' text, as ``source`` reads each, for ``dialect``."""
    text = "\n".join([dialect, *(source(template) for template in DDL_TEMPLATES)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def ensure_tables(warehouse: Warehouse, render: Callable[..., str], source: Callable[[str], str],
                  run_id: str) -> bool:
    """Create the missing tables (renaming old columns first) unless the recorded DDL version is
    current; True if it ran the DDL. ``render`` renders a template of include/sql for this
    warehouse (keyword arguments add to its context), ``source`` reads its text."""
    version = ddl_version(warehouse.dialect, source)
    with warehouse.transaction() as cursor:
        cursor.execute(render("schema/schema_version_exists.sql"))
        if cursor.fetchone()[0]:
            cursor.execute(render("schema/schema_version_current.sql"), {"version": version})
            if cursor.fetchone()[0]:
                return False
    ddl = [render(f"create/{table}.sql") for table in CREATE_ORDER]
    with warehouse.transaction() as cursor:
        cursor.execute(render("create/create_tables_lock.sql"))
        rename_old_columns(cursor, render)
        for text in ddl:
            for statement in split_statements(text):
                cursor.execute(statement)
        parameters = {"version": version, "run_id": run_id,
                      "applied_at": datetime.now(timezone.utc).replace(tzinfo=None)}
        for statement in split_statements(render("schema/schema_version.sql")):
            cursor.execute(statement, parameters)
    return True


def rename_old_columns(cursor: Any, render: Callable[..., str],
                       renames: tuple[tuple[str, str, str], ...] = RENAMED_COLUMNS) -> list[tuple[str, str, str]]:
    """Rename each column of ``renames`` (table, old name, new name) the warehouse still has under
    its old name, in ``cursor``'s transaction; the renames made. One catalog query finds them; a
    table not created yet has nothing to rename. In list order, so a column renamed twice since
    (a to b, then b to c) gets both."""
    if not renames:
        return []
    for table, old, new in renames:
        for name in (table, old, new):
            validate_identifier(name, "renamed column's table or name")
    old_columns = "," + "".join(f"{table}.{old}," for table, old, _ in renames)
    cursor.execute(render("schema/columns_to_rename.sql"), {"old_columns": old_columns})
    present = {(table, column) for table, column in cursor.fetchall()}
    done = []
    for table, old, new in renames:
        if (table, old) in present:
            cursor.execute(render("schema/rename_column.sql", renamed_table=table, old_column=old, new_column=new))
            present = (present - {(table, old)}) | {(table, new)}
            done.append((table, old, new))
            log.info("schema: renamed column %s.%s to %s", table, old, new)
    return done
