"""Render the SQL that ``sparkify_etl`` sends to the warehouse, without a database.

Everything here goes through the DAG's real operator objects (a ``DagBag`` of ``dags/``)
and their own Jinja environment, so the text is what the tasks would send:

* ``render_all(dialect)``: every SQL file every task issues on ``'redshift'`` or
  ``'postgres'`` (the dialect comes from the warehouse connection's type, which we set
  through ``AIRFLOW_CONN_SPARKIFY_WAREHOUSE`` while rendering);
* ``copy_from_s3_sql(task_id)``: the Redshift COPY script of a staging task, rendered
  with the same variables ``StageToRedshiftOperator._copy_from_s3`` passes;
* ``run_on_fake_redshift(task_id)``: runs a task's ``execute`` against a stand-in for the
  ``redshift_connector`` DB-API connection (and for S3) and records every statement,
  its bind parameters and the cursor's paramstyle; bind parameters go through
  ``redshift_connector``'s own paramstyle conversion, so a placeholder the driver would
  reject is recorded as an error.

Run it to look at the SQL (from the repository root)::

    .venv/bin/python tests/redshift/render.py                  # list the renders
    .venv/bin/python tests/redshift/render.py load/users.sql   # print those matching
    .venv/bin/python tests/redshift/render.py --dialect postgres create/

The golden files in ``tests/redshift/golden`` are written by the tests
(``UPDATE_GOLDEN=1``), see ``test_redshift_sql.py``.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
for _path in (str(REPO), str(REPO / "plugins")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

DAGS_DIR = REPO / "dags"
SQL_DIR = REPO / "include" / "sql"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

DAG_ID = "sparkify_etl"
WAREHOUSE_CONN_ID = "sparkify_warehouse"
WAREHOUSE_CONN_ENV = "AIRFLOW_CONN_" + WAREHOUSE_CONN_ID.upper()

# One fixed scheduled run: the hour [00:00, 01:00) of 2018-11-01 (UTC).
WINDOW_START = datetime(2018, 11, 1, 0)
WINDOW_END = datetime(2018, 11, 1, 1)
RUN_ID = "scheduled__2018-11-01T00:00:00+00:00"
# What `scripts/sample_data.py` and the Udacity bucket call the day's event file.
EVENT_KEY = "log_data/2018/11/2018-11-01-events.json"
SONG_KEYS = ("song_data/A/A/A/TRAAAAW128F429D538.json", "song_data/A/A/B/TRAABJL12903CDCF1A.json")

IAM_ROLE_ARN = "arn:aws:iam::123456789012:role/sparkify-redshift"
CREDENTIALS = f"IAM_ROLE '{IAM_ROLE_ARN}'"

# What the stand-in Redshift reports for the staging COPY (stl_load_commits, stl_load_errors, or
# on Serverless sys_load_detail, sys_load_error_detail):
# lines scanned per object, and the lines it rejected (key, line, column, reason).
COPY_LINES_SCANNED = {EVENT_KEY: 3000, **{key: 1 for key in SONG_KEYS}}
COPY_LOAD_ERRORS = [(EVENT_KEY, 17, "ts", "Invalid timestamp format or value [YYYY-MM-DD HH24:MI:SS]")]

# Stage templates only the Redshift path sends (the COPY and Redshift's account of it).
REDSHIFT_PATH_TEMPLATES = ("stage/copy_from_s3.sql", "stage/copy_load_counts.sql", "stage/copy_load_errors.sql",
                           "stage/copy_column_counts.sql")

ANOMALY_TEMPLATE = "checks/anomaly_metrics.sql"

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
    previous = os.environ.get(WAREHOUSE_CONN_ENV)
    os.environ[WAREHOUSE_CONN_ENV] = json.dumps(CONNECTIONS[dialect])
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(WAREHOUSE_CONN_ENV, None)
        else:
            os.environ[WAREHOUSE_CONN_ENV] = previous


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


def check_context() -> dict[str, Any]:
    """The context the quality checks are rendered with: no params, the fixed hour."""
    from sparkify.window import run_window

    return {
        "params": {},
        "data_interval_start": WINDOW_START,
        "data_interval_end": WINDOW_END,
        "run_id": RUN_ID,
        "run_window": run_window,
    }


def rendered_task(task_id: str, dialect: str, context: dict[str, Any] | None = None, **params: Any):
    """A copy of the DAG's task with its template fields rendered, as the task runner would."""
    task = copy.copy(etl_dag().get_task(task_id))
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
    return [t.task_id for t in etl_dag().tasks if t.task_id.startswith("quality_checks.")]


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


def create_sql(dialect: str) -> list[SqlFile]:
    """The create/*.sql files of ``create_tables``, rendered by the task itself."""
    templates = [template_name(sql) for sql in etl_dag().get_task("create_tables").sql]
    rendered = rendered_task("create_tables", dialect).sql
    assert len(templates) == len(rendered), (templates, rendered)
    return [
        SqlFile(template, "create_tables", template, dialect, sql, golden=f"create_{Path(template).stem}")
        for template, sql in zip(templates, rendered)
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
        task = etl_dag().get_task(task_id)
        template = template_name(task.sql)
        modes: dict[str, str] = {}
        for full_refresh in (False, True):
            done = rendered_task(task_id, dialect, full_refresh=full_refresh)
            modes.setdefault(done.mode, done.sql)
        for mode, sql in modes.items():
            # A table with one possible mode (time) keeps a plain name.
            suffix = f" [{mode}]" if len(modes) > 1 else ""
            golden = f"load_{task.table}_{mode}" if len(modes) > 1 else f"load_{task.table}"
            files.append(SqlFile(template + suffix, task_id, template, dialect, sql, golden=golden))
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
        not_null = any(isinstance(c.kind, (exp.NotNullColumnConstraint, exp.PrimaryKeyColumnConstraint)) for c in column.constraints)
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


def anomaly_sql(dialect: str) -> list[SqlFile]:
    """The metrics query of the anomaly-checks task, as ``sparkify.anomalies`` renders it."""
    from sparkify.anomalies import render_metrics_sql
    from sparkify.operators import AnomalyChecksOperator

    columns = [row[0] for row in staging_columns("staging_events")]
    return [
        SqlFile(ANOMALY_TEMPLATE, task.task_id, ANOMALY_TEMPLATE, dialect, render_metrics_sql(dialect, columns),
                golden="checks_anomaly_metrics")
        for task in etl_dag().tasks if isinstance(task, AnomalyChecksOperator)
    ]


def check_sql(dialect: str) -> list[SqlFile]:
    """The queries of the SQLColumnCheckOperator/SQLTableCheckOperator tasks."""
    return [
        SqlFile(task_id, task_id, None, dialect, rendered_task(task_id, dialect, context=check_context()).sql)
        for task_id in check_tasks()
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


# --------------------------------------------------------------------------- running on a stand-in


@dataclass
class Executed:
    """One statement a task sent, how, and what the driver made of its bind parameters."""

    statement: str
    parameters: Any
    paramstyle: str
    via: str  # "transaction" (Warehouse.transaction) or "hook" (DbApiHook.run / get_records)
    error: str | None = None  # redshift_connector's complaint about the placeholders, if any


@dataclass
class Capture:
    executed: list[Executed] = field(default_factory=list)
    uploads: dict[str, str] = field(default_factory=dict)  # s3://bucket/key -> body
    commits: int = 0
    rollbacks: int = 0
    result: Any = None
    error: BaseException | None = None  # what execute() raised (expected for failing checks)
    answer: Callable[[str, Any], list[tuple]] | None = None  # query results; None: _answer's
    copy_fails: bool = False  # the COPY raises, as Redshift's does past MAXERROR
    null_column: str | None = None  # after the COPY, this column holds no value in any row (a vanished key)
    lineage: Any = None  # the task's OpenLineage facets after execute (run_on_fake_redshift(lineage=True))


class _FakeCursor:
    """Stands in for a ``redshift_connector`` cursor: default paramstyle from the driver
    module, and bind parameters converted by the driver's own ``convert_paramstyle``."""

    def __init__(self, capture: Capture, via: str, connection: "_FakeConnection"):
        import redshift_connector

        self.paramstyle = redshift_connector.paramstyle
        self.connection = connection
        self._capture = capture
        self._via = via
        self._rows: list[tuple] = []
        self.rowcount = -1
        self.description = None

    def execute(self, operation: str, args: Any = None) -> None:
        import redshift_connector
        from redshift_connector.core import convert_paramstyle

        error = None
        if args is not None:  # redshift_connector binds whenever vals is not None
            try:
                _, make_args = convert_paramstyle(self.paramstyle, operation)
                make_args(args)
            except Exception as err:  # noqa: BLE001 - recorded, asserted on by the tests
                error = f"{type(err).__name__}: {err}"
        self._capture.executed.append(Executed(operation, args, self.paramstyle, self._via, error))
        if self._capture.copy_fails and _first_word(operation) == "COPY":
            raise redshift_connector.ProgrammingError(
                "Load into table 'staging_events_new' failed. Check 'stl_load_errors' system table for details."
            )
        answer = self._capture.answer or (lambda operation, args: _answer(operation, args, self._capture))
        self._rows = list(answer(operation, args))
        returns_rows = _first_word(operation) in ("SELECT", "WITH")
        self.description = [("column", 25, None, None, None, None, None)] if returns_rows else None
        self.rowcount = len(self._rows) if returns_rows else 0

    def executemany(self, operation: str, seq: list[Any]) -> None:
        for args in seq:
            self.execute(operation, args)

    def fetchall(self) -> list[tuple]:
        return list(self._rows)

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def close(self) -> None:
        pass


def _first_word(statement: str) -> str:
    from sparkify.warehouse import first_code_line

    line = first_code_line(statement)
    return line.split(None, 1)[0].upper() if line else ""


def _answer(operation: str, args: Any, capture: Capture) -> list[tuple]:
    """Query results: the staging table's columns for stage/columns.sql; for the
    stage/copy_load_*.sql queries, Redshift's account (COPY_LINES_SCANNED, COPY_LOAD_ERRORS)
    of the last COPY, which read the objects of the last manifest uploaded; else no rows."""
    if "information_schema.columns" in operation and isinstance(args, dict):
        return list(staging_columns(args["table"]))
    if "CURRENT_SCHEMA" in operation.upper():
        return [("public",)]
    if "SVV_REDSHIFT_COLUMNS" in operation.upper():  # OpenLineage's schema look-up (schema, table, column, ...)
        return [("public", table, name, position, data_type, "dev")
                for table in ("staging_events", "staging_songs") if f"'{table}'" in operation
                for position, (name, data_type, *_) in enumerate(staging_columns(table), start=1)]
    copied = [entry["url"] for entry in json.loads(list(capture.uploads.values())[-1])["entries"]] if capture.uploads else []
    lines = {url: COPY_LINES_SCANNED[url.split("/", 3)[3]] for url in copied}
    errors = [(url, line, column, reason) for url in copied for key, line, column, reason in COPY_LOAD_ERRORS
              if url.split("/", 3)[3] == key]
    if "pg_last_copy_count()" in operation:
        return [(sum(lines.values()) - len(errors),)]
    if re.search(r"FROM \w+_new\s*$", operation) and _first_word(operation) == "SELECT":  # stage/copy_column_counts.sql
        loaded = sum(lines.values()) - len(errors)
        columns = re.findall(r"COUNT\((\w+)\)", operation)
        return [(loaded, *(0 if column == capture.null_column else loaded for column in columns))]
    if "FROM stl_load_commits" in operation or "FROM sys_load_detail" in operation:
        return list(lines.items())
    if ("FROM stl_load_errors" in operation or "FROM sys_load_error_detail" in operation) and _first_word(operation) == "SELECT":
        return errors
    return []


class _FakeConnection:
    def __init__(self, capture: Capture, via: str):
        self._capture = capture
        self._via = via
        self.autocommit = False

    def cursor(self) -> _FakeCursor:
        return _FakeCursor(self._capture, self._via, self)

    def commit(self) -> None:
        self._capture.commits += 1

    def rollback(self) -> None:
        self._capture.rollbacks += 1

    def close(self) -> None:
        pass


class _FakeS3:
    """The few S3Hook calls the staging operator makes, over a fixed listing."""

    def __init__(self, capture: Capture, region: str | None = None):
        self._capture = capture
        self.objects = {EVENT_KEY: ("0123456789abcdef0123456789abcdef", 2_500_000)}
        self.objects.update({key: (f"{index:032x}", 250) for index, key in enumerate(SONG_KEYS, start=1)})
        self.conn_config = SimpleNamespace(role_arn=IAM_ROLE_ARN)
        self.conn_region_name = region
        self.files = {"log_json_path.json": _event_jsonpaths()}

    def get_conn(self) -> SimpleNamespace:
        """The boto3 client calls: the bucket check and reading the JSONPaths file."""
        return SimpleNamespace(
            head_bucket=lambda Bucket: {},
            get_object=lambda Bucket, Key: {"Body": io.BytesIO(self.files[Key])},
        )

    def head_object(self, key: str, bucket_name: str) -> dict | None:
        if key in self.files:
            return {"ETag": '"jsonpaths"', "ContentLength": len(self.files[key])}
        if key not in self.objects:
            return None
        etag, size = self.objects[key]
        return {"ETag": f'"{etag}"', "ContentLength": size}

    def iter_file_metadata(self, prefix: str, bucket_name: str, **_: Any) -> Iterator[dict]:
        for key, (etag, size) in sorted(self.objects.items()):
            if key.startswith(prefix):
                yield {"Key": key, "ETag": f'"{etag}"', "Size": size}

    def load_string(self, string_data: str, key: str, bucket_name: str, replace: bool = False, **_: Any) -> None:
        self._capture.uploads[f"s3://{bucket_name}/{key}"] = string_data


def _event_jsonpaths() -> bytes:
    from scripts.sample_data import _jsonpaths

    return _jsonpaths().encode()


def _failing_check_answer(task) -> Callable[[str, Any], list[tuple]]:
    """Results that fail every check of a common.sql check operator, so that it also sends
    whatever it queries on failure (e.g. samples of offending rows)."""
    from airflow.providers.common.sql.operators.sql import SQLColumnCheckOperator

    if isinstance(task, SQLColumnCheckOperator):
        rows = [(column, check, 1) for column, checks in task.column_mapping.items() for check in checks]
    else:
        rows = [(name, 0) for name in task.checks]

    def answer(operation: str, args: Any) -> list[tuple]:
        return rows if operation == task.sql else []

    return answer


def run_on_fake_redshift(task_id: str, copy_fails: bool = False, serverless: bool = False, iam_role: bool = True,
                         lineage: bool = False, null_column: str | None = None, **params: Any) -> Capture:
    """Render a task for a Redshift connection and run its ``execute`` against stand-ins
    for the Redshift DB-API connection and S3; return what it sent.

    Quality-check tasks are rendered with ``check_context()`` and given results that fail
    every check: their ``execute`` raises (kept in ``Capture.error``) after sending both the
    check query and any failure queries. With ``copy_fails`` a staging task's COPY raises, as
    past MAXERROR, and what the task raised is kept in ``Capture.error`` too. With
    ``serverless`` the warehouse connection is a Redshift Serverless workgroup. Without
    ``iam_role`` the staging COPY's credentials come from the task's real AWS connection (the
    amazon provider's S3Hook reading it), e.g. access keys, instead of the stand-in's role.
    With ``lineage`` the task's OpenLineage facets are then built (``Capture.lineage``), as
    the provider's listener would after the task."""
    from sparkify.operators import AnomalyChecksOperator, StageToRedshiftOperator
    from sparkify.operators.load import _WindowLoadOperator

    capture = Capture(copy_fails=copy_fails, null_column=null_column)
    is_check = task_id in check_tasks()
    context = check_context() if is_check else task_context(**params)
    with warehouse_connection("redshift-serverless" if serverless else "redshift"):
        task = rendered_task(task_id, "redshift", context=context)
        if isinstance(task, (StageToRedshiftOperator, _WindowLoadOperator, AnomalyChecksOperator)):
            warehouse = task.warehouse
            assert warehouse.dialect == "redshift"
            hook = warehouse.hook
            # Warehouse.transaction and DbApiHook.run both open connections with get_conn().
            state = {"depth": 0}

            def get_conn():
                return _FakeConnection(capture, "transaction" if state["depth"] else "hook")

            original = warehouse.transaction

            @contextmanager
            def transaction():
                state["depth"] += 1
                try:
                    with original() as cursor:
                        yield cursor
                finally:
                    state["depth"] -= 1

            hook.get_conn = get_conn
            warehouse.transaction = transaction
            if isinstance(task, StageToRedshiftOperator):
                task.__dict__["s3"] = _FakeS3(capture)
                if not iam_role:
                    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

                    real = S3Hook(aws_conn_id=task.aws_conn_id)
                    task.s3.conn_config, task.s3.get_credentials = real.conn_config, real.get_credentials
        else:
            hook = task.get_db_hook()

            def get_conn():
                return _FakeConnection(capture, "hook")

            hook.get_conn = get_conn
            task.get_db_hook = lambda: hook
            if is_check:
                capture.answer = _failing_check_answer(task)
        try:
            capture.result = task.execute(context)
            if lineage:
                capture.lineage = task.get_openlineage_facets_on_complete(None)
        except Exception as err:  # noqa: BLE001
            if not (is_check or copy_fails or null_column):
                raise
            capture.error = err
    return capture


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
    "s3_key": EVENT_KEY,
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
