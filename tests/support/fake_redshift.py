"""Run a task of ``sparkify_etl`` against a stand-in for Redshift, and record what it sends.

``run_on_fake_redshift(task_id)`` renders the task for a Redshift connection (``support.render``)
and runs its ``execute`` against a stand-in for the ``redshift_connector`` DB-API connection (and
for S3), recording every statement, its bind parameters and the cursor's paramstyle. Bind
parameters go through ``redshift_connector``'s own paramstyle conversion, so a placeholder the
driver would reject is recorded as an error. The stand-in answers the few queries the tasks read
back (the staging table's columns, Redshift's account of a COPY and of the copied rows' columns)
from the constants below, and keeps the DDL version ``sparkify.schema.ensure_tables`` records
(``Capture.schema_version``). The anomaly checks' metrics queries get no rows (an empty window).
"""

from __future__ import annotations

import io
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from support.render import (
    EVENT_KEY, IAM_ROLE_ARN, check_queries, check_tasks, rendered_task, staging_columns, task_context,
    warehouse_connection,
)

SONG_KEYS = ("song_data/A/A/A/TRAAAAW128F429D538.json", "song_data/A/A/B/TRAABJL12903CDCF1A.json")

# What the stand-in Redshift reports for the staging COPY (stl_load_commits, stl_load_errors, or
# on Serverless sys_load_detail, sys_load_error_detail):
# lines scanned per object, and the lines it rejected (key, line, column, reason).
COPY_LINES_SCANNED = {EVENT_KEY: 3000, **{key: 1 for key in SONG_KEYS}}
COPY_LOAD_ERRORS = [(EVENT_KEY, 17, "ts", "Invalid timestamp format or value [YYYY-MM-DD HH24:MI:SS]")]


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
    # The version in the stand-in's schema_version, set by the INSERT ensure_tables sends;
    # None: no schema_version table yet (an empty warehouse).
    schema_version: str | None = None
    # The stand-in's (table, column) pairs that schema/columns_to_rename.sql looks for: the old
    # names of sparkify.catalog.RENAMED_COLUMNS a warehouse from before a rename still has.
    old_columns: list[tuple[str, str]] = field(default_factory=list)


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
            except Exception as err:  # recorded, asserted on by the tests
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
    """Query results: schema/schema_version_*.sql from ``Capture.schema_version`` (which
    schema/schema_version.sql's INSERT sets); schema/columns_to_rename.sql from
    ``Capture.old_columns``; the staging table's columns for stage/columns.sql;
    for the stage/copy_load_*.sql queries, Redshift's account (COPY_LINES_SCANNED,
    COPY_LOAD_ERRORS) of the last COPY, which read the objects of the last manifest uploaded; for
    stage/copy_column_counts.sql, the rows that COPY loaded and a value in each of them in every
    column but ``Capture.null_column``, which has none; else no rows."""
    from sparkify.warehouse import first_code_line

    if "table_name = 'schema_version'" in operation:
        return [(int(capture.schema_version is not None),)]
    if "FROM schema_version WHERE version" in operation:
        return [(int(capture.schema_version == args["version"]),)]
    if first_code_line(operation).upper().startswith("INSERT INTO SCHEMA_VERSION"):
        capture.schema_version = args["version"]
        return []
    if "information_schema.columns" in operation and isinstance(args, dict) and "old_columns" in args:
        return sorted((table, column) for table, column in capture.old_columns
                      if f",{table}.{column}," in args["old_columns"])
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
    if _first_word(operation) == "SELECT" and re.search(r"FROM \w+_new\s*$", operation):  # stage/copy_column_counts.sql
        loaded = sum(lines.values()) - len(errors)
        return [(loaded, *(0 if column == capture.null_column else loaded
                           for column in re.findall(r"COUNT\((\w+)\)", operation)))]
    if "FROM stl_load_commits" in operation or "FROM sys_load_detail" in operation:
        return list(lines.items())
    if ("FROM stl_load_errors" in operation or "FROM sys_load_error_detail" in operation) and _first_word(operation) == "SELECT":
        return errors
    return []


class _FakeConnection:
    """``via`` says, when a cursor is opened, whose it is: a connection may outlive a transaction
    (``Warehouse.session``)."""

    def __init__(self, capture: Capture, via: Callable[[], str]):
        self._capture = capture
        self._via = via
        self.autocommit = False

    def cursor(self) -> _FakeCursor:
        return _FakeCursor(self._capture, self._via(), self)

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


def _check_answer(task, capture: Capture, checks_pass: bool) -> Callable[[str, Any], list[tuple]]:
    """Results for a QualityChecksOperator's table queries (those ``check_queries`` renders): by
    default each check fails (actual 1, expected 0), so that it also sends its failure queries
    (samples of offending rows); with ``checks_pass`` each passes (0, 0). Every other query (the
    offending rows, the anomaly checks' look-up and metrics) gets ``_answer``'s."""
    rows = {query: [(0 if checks_pass else 1, 0) * len(checks)] for query, checks in check_queries(task).values()}

    def answer(operation: str, args: Any) -> list[tuple]:
        return rows[operation] if operation in rows else _answer(operation, args, capture)

    return answer


def use_fake_redshift(warehouse: Any, capture: Capture) -> None:
    """Point a ``sparkify.warehouse.Warehouse`` (on a Redshift connection) at the stand-in:
    ``Warehouse.transaction`` and ``DbApiHook.run`` both open connections with ``get_conn()``;
    their cursors are recorded as ``via`` "transaction" or "hook"."""
    assert warehouse.dialect == "redshift"
    hook = warehouse.hook
    state = {"depth": 0}

    def get_conn():
        return _FakeConnection(capture, lambda: "transaction" if state["depth"] else "hook")

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


def run_on_fake_redshift(task_id: str, copy_fails: bool = False, serverless: bool = False, iam_role: bool = True,
                         lineage: bool = False, null_column: str | None = None, checks_pass: bool = False,
                         **params: Any) -> Capture:
    """Render a task for a Redshift connection and run its ``execute`` against stand-ins
    for the Redshift DB-API connection and S3; return what it sent.

    The warehouse starts empty (no schema_version): staging tasks create the tables first.
    Quality-check tasks are given results that fail every check: their ``execute`` raises (kept
    in ``Capture.error``) after sending each table's check query and its failure queries, then
    the anomaly checks' queries; with ``checks_pass`` every check passes instead. With
    ``copy_fails`` a staging task's COPY raises, as past MAXERROR, and with ``null_column`` the
    COPY leaves that column NULL in every row (schema drift); what the task raised is
    kept in ``Capture.error`` too. With ``serverless`` the warehouse connection is a Redshift
    Serverless workgroup. Without ``iam_role`` the staging COPY's credentials come from the task's
    real AWS connection (the amazon provider's S3Hook reading it), e.g. access keys, instead of
    the stand-in's role. With ``lineage`` the task's OpenLineage facets are then built
    (``Capture.lineage``), as the provider's listener would after the task."""
    from sparkify.operators import StageToRedshiftOperator

    capture = Capture(copy_fails=copy_fails, null_column=null_column)
    is_check = task_id in check_tasks()
    context = task_context(**params)
    connection = "redshift-serverless" if serverless else "redshift"
    with warehouse_connection(connection):
        task = rendered_task(task_id, connection, context=context)
        # Every task reaches the warehouse through its Warehouse; the quality checks' DbApiHook
        # (get_first, get_records) is the Warehouse's hook too.
        use_fake_redshift(task.warehouse, capture)
        if isinstance(task, StageToRedshiftOperator):
            task.__dict__["s3"] = _FakeS3(capture)
            if not iam_role:
                from airflow.providers.amazon.aws.hooks.s3 import S3Hook

                real = S3Hook(aws_conn_id=task.aws_conn_id)
                task.s3.conn_config, task.s3.get_credentials = real.conn_config, real.get_credentials
        if is_check:
            capture.answer = _check_answer(task, capture, checks_pass)
        try:
            capture.result = task.execute(context)
            if lineage:
                capture.lineage = task.get_openlineage_facets_on_complete(None)
        except Exception as err:  # kept in Capture.error: failing checks, COPYs and drift raise on purpose
            if not ((is_check and not checks_pass) or copy_fails or null_column):
                raise
            capture.error = err
    return capture
