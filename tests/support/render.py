"""Render the SQL that ``sparkify_etl`` sends to the warehouse, without a database.

Everything here goes through the DAG's real operator objects (a ``DagBag`` of ``dags/``)
and their own Jinja environment, so the text is what the tasks would send:

* ``render_all(dialect)``: every SQL file every task issues on ``'redshift'`` or
  ``'postgres'``, the anomaly checks' metrics query included (the dialect comes from the
  warehouse connection's type, which we set through ``AIRFLOW_CONN_SPARKIFY_WAREHOUSE`` while
  rendering);
* ``copy_from_s3_sql(task_id)``: the Redshift COPY script of a staging task, rendered
  with the same variables ``StageToRedshiftOperator._copy_from_s3`` passes;
* ``bind`` / ``bind_samples``: a statement with its ``%(name)s`` parameters as literals, to parse it.

Running a task against a stand-in Redshift connection is ``support.fake_redshift``.

Run it to look at the SQL (from the repository root)::

    PYTHONPATH=.:plugins:tests .venv/bin/python -m support.render                  # list the renders
    PYTHONPATH=.:plugins:tests .venv/bin/python -m support.render load/users.sql   # print those matching
    PYTHONPATH=.:plugins:tests .venv/bin/python -m support.render --dialect postgres create/

The golden files in ``tests/redshift/golden`` are written by the tests
(``UPDATE_GOLDEN=1``), see ``test_redshift_sql.py``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

from sparkify.catalog import RENAMED_COLUMNS, WAREHOUSE_CONN_ID

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
SQL_DIR = REPO / "include" / "sql"
GOLDEN_DIR = REPO / "tests" / "redshift" / "golden"

DAG_ID = "sparkify_etl"
WAREHOUSE_CONN_ENV = "AIRFLOW_CONN_" + WAREHOUSE_CONN_ID.upper()

# One fixed scheduled run: the hour [00:00, 01:00) of 2018-11-01 (UTC).
WINDOW_START = datetime(2018, 11, 1, 0)
WINDOW_END = datetime(2018, 11, 1, 1)
RUN_ID = "scheduled__2018-11-01T00:00:00+00:00"
# What `scripts/sample_data.py` and the Udacity bucket call the day's event file.
EVENT_KEY = "log_data/2018/11/2018-11-01-events.json"

IAM_ROLE_ARN = "arn:aws:iam::123456789012:role/sparkify-redshift"
CREDENTIALS = f"IAM_ROLE '{IAM_ROLE_ARN}'"

# Stage templates only the Redshift path sends (the COPY, Redshift's account of it, and the
# copied rows' non-null values per column that schema drift is judged on).
REDSHIFT_PATH_TEMPLATES = ("stage/copy_from_s3.sql", "stage/copy_load_counts.sql", "stage/copy_load_errors.sql",
                           "stage/copy_column_counts.sql")

# The checks/ files the quality-check task issues as queries of their own: each table's checks,
# one check as its report shows it, a failing check's offending rows, and the anomaly checks'
# metrics (sparkify.anomalies). The others are included by these.
CHECKS_TEMPLATE = "checks/table_checks.sql"
CHECK_TEMPLATE = "checks/check.sql"
OFFENDING_TEMPLATE = "checks/offending_rows.sql"
ANOMALY_TEMPLATE = "checks/anomaly_metrics.sql"
ISSUED_CHECK_TEMPLATES = {CHECKS_TEMPLATE, CHECK_TEMPLATE, OFFENDING_TEMPLATE, ANOMALY_TEMPLATE}

# Staging columns that are bookkeeping, not data: stage/columns.sql leaves them out,
# so COPY never lists them.
BOOKKEEPING_COLUMNS = ("source_key", "source_line")

# Warehouse connections of each type (nothing connects: rendering only needs the type).
CONNECTIONS: dict[str, dict[str, Any]] = {
    "redshift": {
        "conn_type": "redshift",
        "host": "sparkify.abc123xyz789.us-west-2.redshift.amazonaws.com",
        "port": 5439,
        "schema": "dev",
        "login": "sparkify_etl",
        "extra": {"iam": True, "cluster_identifier": "sparkify", "db_user": "sparkify_etl", "region": "us-west-2"},
    },
    # A Redshift Serverless workgroup, as the Redshift hook reads one (IAM through the workgroup).
    "redshift-serverless": {
        "conn_type": "redshift",
        "host": "sparkify.123456789012.us-west-2.redshift-serverless.amazonaws.com",
        "port": 5439,
        "schema": "dev",
        "login": "sparkify_etl",
        "extra": {"iam": True, "is_serverless": True, "serverless_work_group": "sparkify", "region": "us-west-2"},
    },
    "postgres": {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "schema": "sparkify",
        "login": "sparkify",
        "password": "not-a-secret",
    },
}


# --------------------------------------------------------------------------- the DAG


@contextmanager
def warehouse_connection(dialect: str) -> Iterator[None]:
    """Point ``sparkify_warehouse`` at a connection of the dialect's type (a key of
    CONNECTIONS: ``redshift-serverless`` is a Redshift one) while inside."""
    with mock.patch.dict(os.environ, {WAREHOUSE_CONN_ENV: json.dumps(CONNECTIONS[dialect])}):
        yield


@lru_cache(maxsize=1)
def etl_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(DAGS_DIR))
    if bag.import_errors:
        raise RuntimeError(f"dags/ failed to import: {bag.import_errors}")
    return bag.dags[DAG_ID]


class _Variables:
    """``var.value`` for templates: every Variable is unset, so the DAG's defaults apply
    (bucket ``udacity-dend``, region ``us-west-2``), whatever the environment holds."""

    def get(self, key: str, default_var: Any = None, **_: Any) -> Any:
        return default_var


def task_context(**params: Any) -> dict[str, Any]:
    """A template context for the fixed scheduled run, with the DAG's default params
    overridden by ``params`` (e.g. ``full_refresh=True``)."""
    from sparkify.window import run_window

    dag = etl_dag()
    resolved = {key: dag.params[key] for key in dag.params}
    resolved.update(params)
    return {
        "dag": dag,
        "params": resolved,
        "data_interval_start": WINDOW_START,
        "data_interval_end": WINDOW_END,
        "logical_date": WINDOW_START,
        "ds": WINDOW_START.date().isoformat(),
        "run_id": RUN_ID,
        "var": {"value": _Variables(), "json": _Variables()},
        "run_window": run_window,
    }


def rendered_task(task_id: str, dialect: str, context: dict[str, Any] | None = None, **params: Any):
    """A copy of the DAG's task with its template fields rendered, as the task runner would, for
    a warehouse connection of ``dialect`` (a key of CONNECTIONS), which the task keeps."""
    task = copy.copy(etl_dag().get_task(task_id))
    # Its own lists and dicts, as a task runner's fresh operator has: what execute appends to
    # (QualityChecksOperator's check_results and sql) must not carry over from another run.
    task.__dict__.update({key: copy.copy(value) for key, value in vars(task).items() if isinstance(value, (list, dict))})
    with warehouse_connection(dialect):
        task.render_template_fields(context if context is not None else task_context(**params))
    return task


def dimension_tasks() -> list[str]:
    from sparkify.operators import LoadDimensionOperator

    return [t.task_id for t in etl_dag().tasks if isinstance(t, LoadDimensionOperator)]


def staging_tasks() -> list[str]:
    from sparkify.operators import StageToRedshiftOperator

    return [t.task_id for t in etl_dag().tasks if isinstance(t, StageToRedshiftOperator)]


def check_tasks() -> list[str]:
    from sparkify.operators import QualityChecksOperator

    return [t.task_id for t in etl_dag().tasks if isinstance(t, QualityChecksOperator)]


def anomaly_tasks() -> list[str]:
    """The quality-check tasks that also run the anomaly checks (their ``anomalies`` is set)."""
    return [task_id for task_id in check_tasks() if etl_dag().get_task(task_id).anomalies]


def schema_task() -> str:
    """The task that runs ``sparkify.schema.ensure_tables`` first: staging tasks create the
    tables (``create_tables``), and the first of them renders the DDL for the tests."""
    return next(task_id for task_id in staging_tasks() if etl_dag().get_task(task_id).create_tables)


# --------------------------------------------------------------------------- rendered SQL


@dataclass(frozen=True)
class SqlFile:
    """One rendered SQL file (or generated query) and the task that issues it."""

    name: str  # e.g. "load/users.sql [merge]" or "stage/copy_from_s3.sql [stage_events]"
    task_id: str
    template: str | None  # the file under include/sql, None for generated SQL (checks)
    dialect: str
    sql: str
    golden: str | None = None  # golden file stem for the pinned Redshift renders


@lru_cache(maxsize=1)
def _templates_by_source() -> dict[str, str]:
    return {path.read_text(): path.relative_to(SQL_DIR).as_posix() for path in sorted(SQL_DIR.rglob("*.sql"))}


def template_name(value: str) -> str:
    """The include/sql file a templated field came from. Parsing the DAG file replaces a
    ``.sql`` field with the file's source (``resolve_template_files``), so look it up."""
    sources = _templates_by_source()
    if value in sources.values():
        return value
    try:
        return sources[value]
    except KeyError:
        raise LookupError(f"not the source of any file under {SQL_DIR}: {value[:200]!r}") from None


def schema_templates() -> list[str]:
    """What ``sparkify.schema.ensure_tables`` renders: the DDL of every table in
    ``CREATE_ORDER``, the lock it creates them under, its schema_version look-ups and record, and
    the renames of old columns it makes first."""
    from sparkify.catalog import CREATE_ORDER

    return [*(f"create/{table}.sql" for table in CREATE_ORDER), "create/create_tables_lock.sql",
            *(f"schema/{path.name}" for path in sorted((SQL_DIR / "schema").glob("*.sql")))]


def schema_template_context(template: str) -> dict[str, Any]:
    """What ``ensure_tables`` adds to the context of a schema template: a column rename gets its
    names (here the first of ``RENAMED_COLUMNS``); the others render with the task's alone."""
    if template == "schema/rename_column.sql":
        table, old, new = RENAMED_COLUMNS[0]
        return {"renamed_table": table, "old_column": old, "new_column": new}
    return {}


def create_sql(dialect: str) -> list[SqlFile]:
    """The create/ and schema/ files ``ensure_tables`` runs, rendered by the staging task's own
    ``_sql``, the ``render`` it passes (goldens ``create_<table>``, ``schema_<name>``)."""
    task_id = schema_task()
    task = rendered_task(task_id, dialect)
    with warehouse_connection(dialect):
        return [
            SqlFile(template, task_id, template, dialect, task._sql(template, **schema_template_context(template)),
                    golden=template.removesuffix(".sql").replace("/", "_"))
            for template in schema_templates()
        ]


def load_sql(dialect: str) -> list[SqlFile]:
    """The load/*.sql files: the fact (and its loaded_hours statement) and each dimension
    in each mode the DAG can give it (``params.full_refresh`` picks truncate-insert)."""
    from sparkify.operators import LoadFactOperator

    files = []
    for task in etl_dag().tasks:
        if isinstance(task, LoadFactOperator):
            done = rendered_task(task.task_id, dialect)
            template = template_name(task.sql)
            files.append(SqlFile(template, task.task_id, template, dialect, done.sql, golden=f"load_{task.table}"))
            if task.record_hours_sql:
                template = template_name(task.record_hours_sql)
                files.append(SqlFile(
                    template, task.task_id, template, dialect, done.record_hours_sql,
                    golden=f"load_{Path(template).stem}",
                ))
    for task_id in dimension_tasks():
        # One task loads every table of its sql dict; full_refresh picks the mode.
        renders = [rendered_task(task_id, dialect, full_refresh=full_refresh) for full_refresh in (False, True)]
        for table, source in etl_dag().get_task(task_id).sql.items():
            template = template_name(source)
            modes = {mode: done.sql[table] for mode, done in zip(("merge", "truncate-insert"), renders)}
            if len(set(modes.values())) == 1:
                # A table whose SQL doesn't depend on the mode (time always merges) keeps a plain name.
                files.append(SqlFile(template, task_id, template, dialect, modes["merge"], golden=f"load_{table}"))
                continue
            for mode, sql in modes.items():
                files.append(SqlFile(f"{template} [{mode}]", task_id, template, dialect, sql, golden=f"load_{table}_{mode}"))
    return files


@lru_cache(maxsize=None)
def staging_columns(table: str) -> tuple[tuple[str, str, int | None, str], ...]:
    """Rows of ``stage/columns.sql`` for a staging table, read from its create/ DDL:
    (column_name, data_type, character_maximum_length, is_nullable), data columns only."""
    import sqlglot
    from sqlglot import exp

    ddl = next(f.sql for f in create_sql("redshift") if f.template == f"create/{table}.sql")
    create = next(
        statement for statement in (sqlglot.parse_one(s, read="redshift") for s in _split(ddl))
        if isinstance(statement, exp.Create)
    )
    rows = []
    for column in create.this.expressions:
        if not isinstance(column, exp.ColumnDef) or column.name in BOOKKEEPING_COLUMNS:
            continue
        kind = column.args["kind"]
        length = int(kind.expressions[0].name) if kind.expressions else None
        data_type = {"VARCHAR": "character varying", "DOUBLE": "double precision"}.get(kind.this.name, kind.this.name.lower())
        not_null = any(isinstance(c.kind, (exp.NotNullColumnConstraint, exp.PrimaryKeyColumnConstraint))
                       for c in column.constraints)
        rows.append((column.name, data_type, length, "NO" if not_null else "YES"))
    return tuple(rows)


def manifest_key(task) -> str:
    """The manifest key ``_copy_from_s3`` writes for the fixed run."""
    return f"{task.manifest_prefix}/{task.table}/{re.sub(r'[^A-Za-z0-9_.-]', '_', RUN_ID)}.manifest"


def copy_variables(task, serverless: bool = False) -> dict[str, Any]:
    """The variables ``StageToRedshiftOperator._copy_from_s3`` renders copy_from_s3.sql with,
    for a staging task whose template fields are rendered (role-based credentials)."""
    return {
        "dialect": "redshift",
        "serverless": serverless,
        "table": task.table,
        "columns": [row[0] for row in staging_columns(task.table)],
        "upsert_keys": task.upsert_keys,
        "manifest_url": f"s3://{task.s3_bucket}/{manifest_key(task)}",
        "credentials": CREDENTIALS,
        "region": task.region,
        "json_format": task.json_format.replace("'", "''"),
        "max_errors": int(task.max_errors),
        "stale_sql": task.stale_sql,
    }


def copy_from_s3_sql(task_id: str, serverless: bool = False) -> str:
    """The Redshift COPY script of a staging task, from the operator's own template env."""
    task = rendered_task(task_id, "redshift")
    return task.get_template_env().get_template("stage/copy_from_s3.sql").render(**copy_variables(task, serverless))


def stage_sql(dialect: str) -> list[SqlFile]:
    """Every stage/*.sql template for each staging task, as the operator's ``_sql`` renders
    them; the REDSHIFT_PATH_TEMPLATES are left out of the PostgreSQL renders, and rendered
    for a provisioned cluster and for Redshift Serverless (``[task, serverless]``, goldens
    ``<name>_serverless``) in the Redshift ones."""
    files = []
    for task_id in staging_tasks():
        task = rendered_task(task_id, dialect)
        env = task.get_template_env()
        columns = [row[0] for row in staging_columns(task.table)]
        for path in sorted((SQL_DIR / "stage").glob("*.sql")):
            template = f"stage/{path.name}"
            if template in REDSHIFT_PATH_TEMPLATES and dialect != "redshift":
                continue
            if template.startswith("stage/stale_"):
                # A staging task's change template, in both phases (on Redshift, inside its COPY script).
                if template == task.stale_sql:
                    for phase in ("before", "after"):
                        sql = env.get_template(template).render(dialect=dialect, table=task.table, phase=phase,
                                                                upsert_keys=task.upsert_keys)
                        files.append(SqlFile(f"{template} [{task_id}, {phase}]", task_id, template, dialect, sql))
                continue
            for serverless in (False, True) if template in REDSHIFT_PATH_TEMPLATES else (False,):
                suffix = "_serverless" if serverless else ""
                if template == "stage/copy_from_s3.sql":
                    sql = copy_from_s3_sql(task_id, serverless)
                    golden = f"copy_{task.table}{suffix}"
                elif template == "stage/copy_column_counts.sql":
                    # Lists the table's columns: one golden per table (serverless renders the same).
                    sql = env.get_template(template).render(dialect=dialect, serverless=serverless, table=task.table,
                                                            columns=columns)
                    golden = None if serverless else f"{path.stem}_{task.table}"
                elif template in REDSHIFT_PATH_TEMPLATES:
                    sql = env.get_template(template).render(dialect=dialect, serverless=serverless, table=task.table)
                    golden = path.stem + suffix  # the same for every table
                else:
                    sql = env.get_template(template).render(dialect=dialect, serverless=False, table=task.table,
                                                            columns=columns)
                    golden = None
                name = f"{template} [{task_id}, serverless]" if serverless else f"{template} [{task_id}]"
                files.append(SqlFile(name, task_id, template, dialect, sql, golden=golden))
    return files


def check_queries(task) -> dict[str, tuple[str, list]]:
    """Per table, the one query a rendered QualityChecksOperator sends and the checks it measures,
    built from the task's rendered ``checks`` by the operator's own methods, as ``execute`` builds
    them (test_quality_checks_send_the_rendered_queries holds the two together)."""
    from sparkify.operators.quality import table_checks

    queries = {}
    for table, spec in task.checks.items():
        checks = table_checks(table, spec)
        queries[table] = (task.table_query(table, checks), checks)
    return queries


def check_sql(dialect: str) -> list[SqlFile]:
    """The quality-check queries: per table, the one that measures its checks
    (``quality_checks [<table>]``), and per check, the check as the report shows it and the
    query for its offending rows (sent when it fails)."""
    files = []
    for task_id in check_tasks():
        task = rendered_task(task_id, dialect)
        for table, (query, checks) in check_queries(task).items():
            files.append(SqlFile(f"{task_id} [{table}]", task_id, CHECKS_TEMPLATE, dialect, query))
            for check in checks:
                files.append(SqlFile(f"{task_id} [{table}.{check.name}]", task_id, CHECK_TEMPLATE, dialect,
                                     task.check_query(check)))
                files.append(SqlFile(f"{task_id} [{table}.{check.name}, offending rows]", task_id, OFFENDING_TEMPLATE,
                                     dialect, task.offending_query(check)))
    return files


def anomaly_sql(dialect: str) -> list[SqlFile]:
    """The anomaly checks' metrics query (golden ``checks_anomaly_metrics``), as the task that
    runs them renders it for the staged table's columns."""
    from sparkify.anomalies import METRICS_TEMPLATE, STAGED_TABLE

    columns = [row[0] for row in staging_columns(STAGED_TABLE)]
    return [
        SqlFile(METRICS_TEMPLATE, task_id, METRICS_TEMPLATE, dialect,
                rendered_task(task_id, dialect).render_sql(METRICS_TEMPLATE, columns=columns),
                golden="checks_anomaly_metrics")
        for task_id in anomaly_tasks()
    ]


@lru_cache(maxsize=2)
def _render_all(dialect: str) -> tuple[SqlFile, ...]:
    return (*create_sql(dialect), *stage_sql(dialect), *load_sql(dialect), *check_sql(dialect), *anomaly_sql(dialect))


def render_all(dialect: str) -> list[SqlFile]:
    """Every SQL file every task of the DAG issues on ``dialect``."""
    return list(_render_all(dialect))


def goldens() -> dict[str, str]:
    """Golden file stem -> rendered Redshift SQL, for the renders we pin."""
    return {f.golden: f.sql for f in render_all("redshift") if f.golden}


def _split(sql: str) -> list[str]:
    from sparkify.warehouse import split_statements

    return split_statements(sql)


def sql_literal(value: Any) -> str:
    """A bind parameter value written as a SQL literal (for parsing statements offline)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def bind(statement: str, parameters: Any) -> str:
    """Substitute ``%(name)s`` placeholders with literals, pyformat-style: like the driver,
    a statement sent with a parameter dict must not hold any other ``%``, and every
    placeholder must have a value (KeyError otherwise)."""
    if parameters is None:
        return statement
    return statement % {key: sql_literal(value) for key, value in parameters.items()}


PLACEHOLDER = re.compile(r"%\((\w+)\)s")
SAMPLE_BINDS: dict[str, Any] = {
    # Values the operators bind, by name, for renders parsed outside an execute().
    "window_start": WINDOW_START,
    "window_end": WINDOW_END,
    "hour_start": WINDOW_START,
    "loaded_at": WINDOW_END,
    "rejected_at": WINDOW_END,
    "queued_at": WINDOW_END,
    "seen_missing_at": WINDOW_END,
    "rows_removed": False,
    "run_id": RUN_ID,
    "table": "staging_events",
    "source_key": EVENT_KEY,
    "etag": "0123456789abcdef0123456789abcdef",
    "size_bytes": 2_500_000,
    "lines_read": 3000,
    "rows_staged": 2990,
    "rows_rejected": 10,
    "source_line": 17,
    "field": "ts",
    "reason": "ts: 'x' is not epoch milliseconds",
    "raw_text": '{"ts": "x"}',
    "baseline_start": datetime(2018, 10, 25, 0),
    "version": "0123456789abcdef0123456789abcdef",  # sparkify.schema.ddl_version's length
    # sparkify.schema.rename_old_columns's list of the old names of RENAMED_COLUMNS.
    "old_columns": "," + "".join(f"{table}.{old}," for table, old, _ in RENAMED_COLUMNS),
    "applied_at": WINDOW_END,
}


def bind_samples(statement: str) -> str:
    """``bind`` with sample values for every placeholder the statement holds."""
    names = set(PLACEHOLDER.findall(statement))
    unknown = names - SAMPLE_BINDS.keys()
    if unknown:
        raise KeyError(f"no sample value for bind parameter(s) {sorted(unknown)}; add them to SAMPLE_BINDS")
    return bind(statement, {name: SAMPLE_BINDS[name] for name in names}) if names else statement


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("match", nargs="*", help="print renders whose name contains any of these")
    parser.add_argument("--dialect", choices=sorted(CONNECTIONS), default="redshift")
    args = parser.parse_args(argv)
    # Standalone: keep Airflow away from ~/airflow.
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="sparkify-render-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_DIR))
    files = render_all(args.dialect)
    if not args.match:
        for f in files:
            print(f"{f.name:55} {f.task_id:32} {f.golden or ''}")
        return 0
    for f in files:
        if any(m in f.name for m in args.match):
            print(f"-- ===== {f.name} ({f.task_id}, {f.dialect})\n{f.sql}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
