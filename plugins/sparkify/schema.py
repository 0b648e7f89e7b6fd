"""The warehouse's tables: created by the first run, and again only when their DDL changes.

Every ``include/sql/create/*.sql`` statement is idempotent (``IF NOT EXISTS``), but running them
all on every run costs a round of catalog locks on each run's critical path. So the DDL's
templates (and the macros they use), with the dialect they render for, are hashed into a version
recorded in ``schema_version``: while the recorded version is current a run reads one row and
moves on, without even rendering the DDL. An empty warehouse, or DDL that changed (a new table or
index), gets every statement, under a lock so that concurrent first runs don't race in the catalog.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Callable

from sparkify.catalog import CREATE_ORDER
from sparkify.warehouse import Warehouse, split_statements


DDL_TEMPLATES = (*(f"create/{table}.sql" for table in CREATE_ORDER), "macros.sql")


def ddl_version(dialect: str, source: Callable[[str], str]) -> str:
    """The hash of the DDL templates' text, as ``source`` reads each, for ``dialect``."""
    text = "\n".join([dialect, *(source(template) for template in DDL_TEMPLATES)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def ensure_tables(warehouse: Warehouse, render: Callable[[str], str], source: Callable[[str], str],
                  run_id: str) -> bool:
    """Create the missing tables unless the recorded DDL version is current; True if it ran the DDL.
    ``render`` renders a template of include/sql for this warehouse, ``source`` reads its text."""
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
        for text in ddl:
            for statement in split_statements(text):
                cursor.execute(statement)
        parameters = {"version": version, "run_id": run_id,
                      "applied_at": datetime.now(timezone.utc).replace(tzinfo=None)}
        for statement in split_statements(render("schema/schema_version.sql")):
            cursor.execute(statement, parameters)
    return True
