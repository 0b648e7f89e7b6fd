"""The Redshift SQL of ``sparkify_etl``: rendered, parsed and pinned, without a database.

Every SQL file every task issues is rendered through the DAG's real operators (``support/render.py``):
the DDL and schema_version SQL the staging tasks run (``sparkify.schema.ensure_tables``), the
staging templates with the COPY script as ``StageToRedshiftOperator._copy_from_s3`` renders it,
the fact and dimension loads in both dimension modes, the quality checks' query per table, and
the anomaly checks' metrics query (``sparkify.anomalies``).
Each statement is split with ``sparkify.warehouse.split_statements``, its ``%(name)s`` bind
parameters are replaced by literals, and it is parsed with ``sqlglot.parse_one(..., read="redshift")``.

Tasks are also run (``execute``) against a stand-in for the ``redshift_connector`` connection
and for S3 (``support.fake_redshift.run_on_fake_redshift``), to check that what they send is what was
rendered, that every ``%(name)s`` they send has a value, that ``redshift_connector``'s own
paramstyle conversion accepts it, and to parse what only exists at run time: the statements
with their real bind values, the queries the quality checks send when a check fails and the
anomaly checks' queries they send after them. A staging COPY that leaves a column NULL in every
row (a vanished JSON key) fails the task as schema drift.
``test_driver_accepts_every_bind_parameter`` checks that every query, including the staging
operator's look-ups, binds its ``%(name)s`` values through a cursor set to that style.
``ensure_tables`` is driven on its own too, over the stand-in's recorded schema_version: the DDL
runs on an empty warehouse and after the DDL templates' text changed, and not while the recorded
version is current.

Golden files
------------
``tests/redshift/golden/<name>.sql`` pin the rendered Redshift SQL of the COPY scripts (both
staging tables) and Redshift's account of them, the users/songs/artists loads in both modes, the
songplays, loaded_hours and time loads, every create/ DDL and schema/ file, and the anomaly
checks' metrics query. ``test_golden`` compares byte for byte.
After an intended change to a template or an operator, rewrite them and review the diff::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/redshift -q
    git diff tests/redshift/golden

With ``UPDATE_GOLDEN=1`` golden files nothing renders any more are deleted too.

What sqlglot can't check, and what we check instead
---------------------------------------------------
* ``LOCK name``: sqlglot 30 has no LOCK statement and falls back to ``exp.Command`` (an
  unparsed string). Any ``Command`` fails the test unless the statement matches Redshift's
  grammar ``LOCK [ TABLE ] name [, ...]`` (Redshift has no PostgreSQL ``IN ... MODE``).
* ``COPY``: sqlglot parses the target table, column list, ``FROM`` and the credentials
  (``IAM_ROLE``, ``REGION``) into an ``exp.Copy``, but reads the remaining options loosely
  (``TRUNCATECOLUMNS BLANKSASNULL`` becomes one option with a value, unknown words pass).
  The options are therefore tokenised by ``copy_options`` against Redshift's grammar for
  the options we use; anything else, or a repeated option, fails.
* sqlglot's redshift dialect also accepts PostgreSQL-only syntax (``LATERAL``,
  ``IS DISTINCT FROM``, ``ON CONFLICT``, ``DISTSTYLE FOO``...), so ``POSTGRES_ONLY`` lists
  constructs Redshift rejects and the DDL test allows only Redshift's distribution styles.
"""

from __future__ import annotations

import copy
import json
import os
import re
from datetime import datetime, timedelta

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from support import fake_redshift, render
from support.fake_redshift import run_on_fake_redshift
from support.render import GOLDEN_DIR, SQL_DIR, bind, bind_samples, check_queries, render_all
from sparkify.catalog import AWS_CONN_ID, CREATE_ORDER, RENAMED_COLUMNS, WAREHOUSE_CONN_ID
from sparkify.schema import DDL_TEMPLATES, ddl_version, ensure_tables
from sparkify.warehouse import UnsupportedWarehouse, Warehouse, split_statements

UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"
REPO = render.REPO

REDSHIFT_FILES = render_all("redshift")
POSTGRES_FILES = render_all("postgres")
GOLDENS = render.goldens()

# Stage templates only the PostgreSQL path (COPY FROM STDIN, row by row) sends; they are not
# Redshift SQL (COPY FROM STDIN, advisory locks, arrays) and are left out of the Redshift checks.
# test_redshift_path_sends_exactly_the_redshift_stage_templates keeps this list honest.
POSTGRES_PATH_TEMPLATES = {
    "stage/copy_from_stdin.sql",
    "stage/copy_source_column_types.sql",
    "stage/lock_objects.sql",
    "stage/stage_load_ledger_etags.sql",
    "stage/staging_object_rows.sql",
    "stage/stage_rejects.sql",
    "stage/stage_rejects_delete.sql",
    "stage/stage_load_ledger_delete.sql",
    "stage/stage_key_presence.sql",
    "stage/stage_key_presence_delete.sql",
}
# Sent on both paths, but only when a staged object is no longer listed; the stand-in's
# objects are all there.
WHEN_OBJECTS_ARE_MISSING = {"stage/stage_missing_objects.sql"}
# Files of Jinja macros that templates import; they render nothing of their own.
MACRO_FILES = {"macros.sql", "load_history.sql"}
# include/sql folders of other DAGs (sparkify_analytics), not sent by sparkify_etl.
OTHER_DAGS_TEMPLATES = ("analytics/",)
# Included by the quality checks' queries, not issued as files of their own (but for
# render.ISSUED_CHECK_TEMPLATES).
CHECK_TEMPLATES = ("checks/",)

# Renders the pinned goldens must include (the brief: COPY, dimensions in both modes,
# songplays and time loads, all DDL and the schema_version SQL).
REQUIRED_GOLDENS = {
    "copy_staging_events", "copy_staging_songs", "load_songplays", "load_time",
    *(f"load_{table}_{mode}" for table in ("users", "songs", "artists") for mode in ("merge", "truncate-insert")),
    *(f"{folder}_{path.stem}" for folder in ("create", "schema") for path in (SQL_DIR / folder).glob("*.sql")),
}

# Distribution and sort keys as the create/ comments intend them: the fact and the event
# staging table are distributed on the user (their big join) and sorted on time; everything
# else is small and copied to every node (ALL), sorted on its key where it has one.
EXPECTED_DISTRIBUTION = {
    "staging_events": ("KEY", "userid", ["ts"]),
    "staging_songs": ("ALL", None, []),
    "stage_load_ledger": ("ALL", None, []),
    "stage_rejects": ("ALL", None, []),
    "stage_key_presence": ("ALL", None, []),
    "loaded_hours": ("ALL", None, ["hour_start"]),
    "songplays": ("KEY", "user_id", ["start_time"]),
    "users": ("ALL", None, ["user_id"]),
    "songs": ("ALL", None, ["song_id"]),
    "artists": ("ALL", None, ["artist_id"]),
    "time": ("ALL", None, ["start_time"]),
    "schema_version": ("ALL", None, []),
}
REDSHIFT_DISTSTYLES = {"ALL", "EVEN", "KEY", "AUTO"}

# Redshift's LOCK: LOCK [ TABLE ] table_name [, ...]
LOCK_STATEMENT = re.compile(r"LOCK(?:\s+TABLE)?\s+[a-z_][a-z0-9_]*(?:\s*,\s*[a-z_][a-z0-9_]*)*", re.I)

# Syntax PostgreSQL accepts and Redshift does not (sqlglot's redshift dialect parses most of it).
POSTGRES_ONLY = {
    "CREATE INDEX": r"\bCREATE\s+(UNIQUE\s+)?INDEX\b",
    "LATERAL": r"\bLATERAL\b",
    "pg_advisory_*": r"\bpg_advisory",
    "hashtext()": r"\bhashtext\s*\(",
    "IS [NOT] DISTINCT FROM": r"\bIS\s+(NOT\s+)?DISTINCT\s+FROM\b",
    "ON CONFLICT": r"\bON\s+CONFLICT\b",
    "COPY ... FROM STDIN": r"\bFROM\s+STDIN\b",
    "LOCK ... IN ... MODE": r"\bLOCK\b[^;]*\bMODE\b",
    "RETURNING": r"\bRETURNING\b",
}
REDSHIFT_ONLY = {
    "DISTSTYLE": r"\bDISTSTYLE\b",
    "DISTKEY": r"\bDISTKEY\b",
    "SORTKEY": r"\bSORTKEY\b",
    "MANIFEST": r"\bMANIFEST\b",
    "IAM_ROLE": r"\bIAM_ROLE\b",
    "stl_load_errors": r"\bstl_load_errors\b",
}

REDSHIFT_CONNECTION = render.CONNECTIONS["redshift"]


def code_only(sql: str) -> str:
    """SQL without ``--`` comments (comments may name what the code avoids)."""
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def parse_redshift(statement: str) -> exp.Expression:
    """Parse one statement (placeholders already bound) with sqlglot's redshift dialect;
    a ParseError propagates, an unparsed fallback (``exp.Command``) fails unless it is a LOCK."""
    tree = sqlglot.parse_one(statement, read="redshift")
    if isinstance(tree, exp.Command):
        text = " ".join(code_only(statement).split())
        if not LOCK_STATEMENT.fullmatch(text):
            pytest.fail(f"sqlglot could not parse this as Redshift SQL (fell back to a raw command):\n{statement}")
    return tree


def statements(sql_file: render.SqlFile) -> list[str]:
    found = split_statements(sql_file.sql)
    assert found, f"{sql_file.name} rendered no statement"
    return found


def find_file(files: list[render.SqlFile], name: str) -> render.SqlFile:
    return next(f for f in files if f.name == name)


# --------------------------------------------------------------------------- coverage


def test_every_task_issues_rendered_sql():
    dag = render.etl_dag()
    assert {f.task_id for f in REDSHIFT_FILES} == {t.task_id for t in dag.tasks}


def test_every_sql_template_is_rendered():
    templates = {
        path
        for path in (p.relative_to(SQL_DIR).as_posix() for p in SQL_DIR.rglob("*.sql"))
        if path not in MACRO_FILES and not path.startswith(OTHER_DAGS_TEMPLATES + CHECK_TEMPLATES)
    }
    # checks/ files issued as queries of their own are rendered too.
    templates |= render.ISSUED_CHECK_TEMPLATES
    assert templates == {f.template for f in REDSHIFT_FILES if f.template}


@pytest.mark.parametrize("task_id", [*render.staging_tasks(), *render.check_tasks()])
def test_tasks_compile_each_template_once(task_id):
    """The templates a task renders while it runs (one per check, several per staging batch) are
    compiled once per task: Airflow's own environment caches none."""
    env = render.rendered_task(task_id, "redshift").sql_templates
    assert env.get_template("macros.sql") is env.get_template("macros.sql")


def test_check_templates_are_rendered_into_the_checks():
    """checks/*.sql are included by the quality checks' generated SQL, rendered in full."""
    drift = find_file(REDSHIFT_FILES, "quality_checks [loaded_hours]").sql
    assert "hour_start NOT IN (" in drift and "FULL JOIN" in drift and "{%" not in drift
    # The run and its window are bound as parameters, never written into the text.
    assert "run_id = %(run_id)s" in drift and "hour_start >= %(window_start)s" in drift


def test_pinned_renders_include_the_required_ones():
    assert REQUIRED_GOLDENS <= GOLDENS.keys()


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", [f.name for f in REDSHIFT_FILES if f.template not in POSTGRES_PATH_TEMPLATES])
def test_redshift_statements_parse(name):
    """Every statement of every Redshift render parses in sqlglot's redshift dialect
    (templates of the PostgreSQL staging path are left out: never sent to Redshift, see
    test_redshift_path_sends_exactly_the_redshift_stage_templates)."""
    for statement in statements(find_file(REDSHIFT_FILES, name)):
        try:
            parse_redshift(bind_samples(statement))
        except ParseError as err:
            pytest.fail(f"{name}: not valid Redshift SQL for sqlglot: {err}\n{statement}")


def test_lock_fallback_is_really_checked():
    """The LOCK escape hatch accepts Redshift's form only, and a Command never passes silently."""
    parse_redshift("LOCK users")
    parse_redshift("LOCK TABLE users, songs")
    with pytest.raises(pytest.fail.Exception):
        parse_redshift("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
    with pytest.raises(ParseError):
        parse_redshift("SELECT FROM WHERE")


def test_bind_samples_rejects_unknown_placeholders():
    with pytest.raises(KeyError):
        bind_samples("SELECT %(nobody_binds_this)s")


# --------------------------------------------------------------------------- COPY

COPY_OPTIONS = re.compile(
    r"""\s*(?:
      (?P<IAM_ROLE>IAM_ROLE\s+'arn:aws:iam::\d{12}:role/[\w+=,.@/-]+')
    | (?P<REGION>REGION\s+'[a-z]{2}(?:-[a-z]+)+-\d')
    | (?P<FORMAT>FORMAT\s+AS\s+JSON\s+'(?:auto|auto\s+ignorecase|s3://[^']+)')
    | (?P<TIMEFORMAT>TIMEFORMAT\s+'epochmillisecs')
    | (?P<TRUNCATECOLUMNS>TRUNCATECOLUMNS)
    | (?P<BLANKSASNULL>BLANKSASNULL)
    | (?P<EMPTYASNULL>EMPTYASNULL)
    | (?P<MAXERROR>MAXERROR\s+(?:AS\s+)?\d+)
    | (?P<MANIFEST>MANIFEST)
    )(?=\s|$)""",
    re.X,
)
REQUIRED_COPY_OPTIONS = {
    "IAM_ROLE", "REGION", "FORMAT", "TIMEFORMAT", "TRUNCATECOLUMNS", "BLANKSASNULL", "EMPTYASNULL", "MAXERROR", "MANIFEST",
}
COPY_HEAD = re.compile(r"COPY\s+(?P<table>\w+)\s*\((?P<columns>\s*\w+(?:\s*,\s*\w+)*\s*)\)\s*FROM\s+'(?P<url>s3://[^']+)'", re.S)


def copy_options(statement: str) -> dict[str, str]:
    """Tokenise a COPY's options after ``FROM '...'``: known options only, each once."""
    head = COPY_HEAD.match(statement.strip())
    assert head, f"not COPY table (columns) FROM 's3://...':\n{statement}"
    rest, position, found = statement.strip()[head.end():], 0, {}
    while position < len(rest):
        match = COPY_OPTIONS.match(rest, position)
        if not match:
            raise AssertionError(f"unexpected COPY option at {rest[position:position + 60]!r}")
        name = match.lastgroup
        assert name not in found, f"COPY option {name} given twice"
        found[name] = " ".join(match.group(name).split())
        position = match.end()
        while position < len(rest) and rest[position].isspace():
            position += 1
    return found


def test_copy_options_tokeniser_rejects_what_redshift_would():
    good = "COPY t (a) FROM 's3://b/m' IAM_ROLE 'arn:aws:iam::123456789012:role/r' MANIFEST"
    assert copy_options(good) == {"IAM_ROLE": "IAM_ROLE 'arn:aws:iam::123456789012:role/r'", "MANIFEST": "MANIFEST"}
    for bad in (good + " MANIFEST", good + " FOO", good.replace("MANIFEST", "MAXERROR"), "COPY t (a,) FROM 's3://b/m'"):
        with pytest.raises(AssertionError):
            copy_options(bad)


@pytest.mark.parametrize("task_id", render.staging_tasks())
def test_copy_script(task_id):
    task = render.rendered_task(task_id, "redshift")
    variables = render.copy_variables(task)
    script = split_statements(render.copy_from_s3_sql(task_id))
    copies = [s for s in script if s.lstrip().upper().startswith("COPY")]
    assert len(copies) == 1, script
    copy = copies[0]

    tree = parse_redshift(copy)
    assert isinstance(tree, exp.Copy)
    assert tree.this.this.name == f"{task.table}_new"
    assert [c.name for c in tree.this.expressions] == variables["columns"]
    assert [f.name for f in tree.args["files"]] == [variables["manifest_url"]]
    credentials = tree.args["credentials"]
    assert credentials.args["iam_role"].name == render.IAM_ROLE_ARN
    assert credentials.args["region"].name == "us-west-2"

    options = copy_options(copy)
    assert options.keys() == REQUIRED_COPY_OPTIONS
    assert options["FORMAT"] == f"FORMAT AS JSON '{task.json_format}'"
    assert options["MAXERROR"] == "MAXERROR 10"  # the DAG's default max_errors param
    assert options["TIMEFORMAT"] == "TIMEFORMAT 'epochmillisecs'"

    # The new rows replace staged rows with the same upsert key, in the same transaction.
    deletes = [parse_redshift(s) for s in script if s.lstrip().upper().startswith("DELETE")]
    delete = next(d for d in deletes if d.this.name == task.table)
    keys = {(c.table, c.name) for c in delete.args["where"].find_all(exp.Column)}
    assert keys == {(t, k) for k in task.upsert_keys for t in (task.table, f"{task.table}_new")}


def test_copy_columns_match_the_json():
    """staging_events is loaded with a JSONPaths file (paths map to the column list in order);
    staging_songs with 'auto' (lower-case JSON keys must equal column names)."""
    from scripts.sample_data import EVENT_KEYS, SONG_KEYS, _jsonpaths

    events = render.copy_variables(render.rendered_task("stage_events", "redshift"))
    paths = json.loads(_jsonpaths())["jsonpaths"]
    assert paths == [f"$['{key}']" for key in EVENT_KEYS]
    assert events["columns"] == [key.lower() for key in EVENT_KEYS]
    assert events["json_format"].endswith("/log_json_path.json")

    songs = render.copy_variables(render.rendered_task("stage_songs", "redshift"))
    assert songs["json_format"] == "auto"
    assert songs["columns"] == [key for key in SONG_KEYS]


# --------------------------------------------------------------------------- DDL


@pytest.mark.parametrize("table", sorted(EXPECTED_DISTRIBUTION))
def test_redshift_ddl_distribution(table):
    ddl = find_file(REDSHIFT_FILES, f"create/{table}.sql")
    # One statement per file: the table's CREATE, nothing else.
    [statement] = statements(ddl)
    tree = parse_redshift(statement)
    assert isinstance(tree, exp.Create) and tree.this.this.name == table
    columns = {c.name for c in tree.this.expressions if isinstance(c, exp.ColumnDef)}
    properties = tree.args["properties"].expressions
    style = [p.this.name for p in properties if isinstance(p, exp.DistStyleProperty)]
    distkey = [p.this.name for p in properties if isinstance(p, exp.DistKeyProperty)]
    sortkey = [[c.name for c in p.this] for p in properties if isinstance(p, exp.SortKeyProperty)]
    assert style and style[0] in REDSHIFT_DISTSTYLES
    assert (style[0], distkey[0] if distkey else None, sortkey[0] if sortkey else []) == EXPECTED_DISTRIBUTION[table]
    assert set(distkey) | set(sortkey[0] if sortkey else []) <= columns


def test_staging_columns_come_from_the_ddl():
    rows = render.staging_columns("staging_events")
    assert rows[0] == ("artist", "character varying", 512, "YES")
    assert ("ts", "timestamp", None, "NO") in rows
    assert not {"source_key", "source_line"} & {r[0] for r in rows}


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden(name):
    path = GOLDEN_DIR / f"{name}.sql"
    rendered = GOLDENS[name]
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != rendered:
            path.write_text(rendered)
    assert path.exists(), f"no golden file {path.relative_to(REPO)}; run with UPDATE_GOLDEN=1 to create it"
    assert path.read_text() == rendered, (
        f"{name}: rendered SQL differs from {path.relative_to(REPO)}; "
        "if the change is intended, run with UPDATE_GOLDEN=1 and review the diff"
    )


def test_no_stale_golden_files():
    stale = {p.stem for p in GOLDEN_DIR.glob("*.sql")} - GOLDENS.keys()
    if UPDATE_GOLDEN:
        for name in stale:
            (GOLDEN_DIR / f"{name}.sql").unlink()
        stale = set()
    assert not stale, f"golden files nothing renders: {sorted(stale)} (UPDATE_GOLDEN=1 removes them)"


# --------------------------------------------------------------------------- dialect choice


@pytest.mark.parametrize(
    ("conn_type", "dialect", "hook_class"),
    [
        ("redshift", "redshift", "airflow.providers.amazon.aws.hooks.redshift_sql.RedshiftSQLHook"),
        ("postgres", "postgres", "airflow.providers.postgres.hooks.postgres.PostgresHook"),
    ],
)
def test_dialect_follows_connection_type(monkeypatch, conn_type, dialect, hook_class):
    monkeypatch.setenv("AIRFLOW_CONN_X", json.dumps({**render.CONNECTIONS[conn_type], "conn_type": conn_type}))
    warehouse = Warehouse("x")
    assert warehouse.dialect == dialect
    hook = warehouse.hook
    assert f"{type(hook).__module__}.{type(hook).__qualname__}" == hook_class
    assert hook.get_conn_id() == "x"


def test_unsupported_connection_type(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_X", json.dumps({"conn_type": "mysql", "host": "db", "login": "u"}))
    with pytest.raises(UnsupportedWarehouse, match="mysql"):
        _ = Warehouse("x").dialect
    with pytest.raises(UnsupportedWarehouse):
        _ = Warehouse("x").hook


def test_operators_take_the_dialect_from_the_connection():
    """The same task renders Redshift SQL on a redshift connection and PostgreSQL on postgres."""
    redshift = render.rendered_task("load_dimensions", "redshift").sql["users"]
    postgres = render.rendered_task("load_dimensions", "postgres").sql["users"]
    assert "LOCK users;" in redshift and "CROSS JOIN LATERAL" not in redshift
    assert "IN SHARE ROW EXCLUSIVE MODE" in postgres and "CROSS JOIN LATERAL" in postgres


@pytest.mark.parametrize("task_id", render.check_tasks())
def test_sql_operators_use_the_redshift_hook(task_id):
    from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

    task = render.rendered_task(task_id, "redshift")
    with render.warehouse_connection("redshift"):
        assert isinstance(task.get_db_hook(), RedshiftSQLHook)


def test_postgres_rendering_has_no_redshift_only_sql():
    found = {
        (f.name, keyword)
        for f in POSTGRES_FILES
        for keyword, pattern in REDSHIFT_ONLY.items()
        if re.search(pattern, code_only(f.sql), re.I)
    }
    assert not found
    # ...and it is the PostgreSQL branch that rendered.
    assert any(re.search(POSTGRES_ONLY["CREATE INDEX"], f.sql) for f in POSTGRES_FILES)


def test_redshift_rendering_has_no_postgres_only_sql():
    found = {
        (f.name, keyword)
        for f in REDSHIFT_FILES
        if f.template not in POSTGRES_PATH_TEMPLATES
        for keyword, pattern in POSTGRES_ONLY.items()
        if re.search(pattern, code_only(f.sql), re.I)
    }
    assert not found
    assert any(re.search(REDSHIFT_ONLY["DISTSTYLE"], f.sql) for f in REDSHIFT_FILES)


# --------------------------------------------------------------------------- what tasks send

RUNS = {
    **{task_id: {} for task_id in render.check_tasks()},
    **{f"{task_id}[passing]": {"checks_pass": True} for task_id in render.check_tasks()},
    "stage_events": {},
    "stage_songs": {},
    "stage_events[serverless]": {"serverless": True},
    "stage_songs[serverless]": {"serverless": True},
    "load_songplays_fact": {},
    **{
        f"{task_id}[{'truncate-insert' if full_refresh else 'merge'}]": {"full_refresh": full_refresh}
        for task_id in render.dimension_tasks()
        for full_refresh in (False, True)
    },
}


@pytest.fixture(scope="module")
def captures():
    return {run: run_on_fake_redshift(run.split("[")[0], **params) for run, params in RUNS.items()}


def all_executed(captures):
    return [(run, executed) for run, capture in captures.items() for executed in capture.executed]


def test_sent_statements_parse(captures):
    """Every statement the tasks send on the Redshift path, with the parameters they bind."""
    for run, executed in all_executed(captures):
        try:
            bound = bind(executed.statement, executed.parameters)  # KeyError: a placeholder nobody binds
        except KeyError as err:
            pytest.fail(f"{run}: statement needs bind parameter {err}, not given:\n{executed.statement}")
        try:
            parse_redshift(bound)
        except ParseError as err:
            pytest.fail(f"{run}: not valid Redshift SQL for sqlglot: {err}\n{bound}")
        for keyword, pattern in POSTGRES_ONLY.items():
            assert not re.search(pattern, code_only(executed.statement), re.I), (run, keyword, executed.statement)


def anomaly_statements() -> list[str]:
    """What the anomaly checks send: the staged table's columns (stage/columns.sql, as the staging
    task of that table renders it), then the two statements of the metrics query."""
    from sparkify.anomalies import STAGED_TABLE

    stage_task = next(task_id for task_id in render.staging_tasks()
                      if render.etl_dag().get_task(task_id).table == STAGED_TABLE)
    return [find_file(REDSHIFT_FILES, f"stage/columns.sql [{stage_task}]").sql,
            *split_statements(find_file(REDSHIFT_FILES, render.ANOMALY_TEMPLATE).sql)]


@pytest.mark.parametrize("task_id", render.check_tasks())
def test_quality_checks_send_the_rendered_queries(captures, task_id):
    """The check task sends each table's rendered query (the one check_queries builds, so what
    the tests parse is what runs); given failing results it then sends one offending-rows
    query per failing check (all parsed by test_sent_statements_parse), then the anomaly checks'
    queries if it runs them, and fails naming every failing check."""
    from sparkify.operators.quality import SAMPLE_ROWS

    capture = captures[task_id]
    task = render.rendered_task(task_id, "redshift")
    queries = check_queries(task)
    assert [f.sql for f in REDSHIFT_FILES if f.task_id == task_id and f.template == render.CHECKS_TEMPLATE] == [
        query for query, _ in queries.values()]
    expected = [
        statement
        for query, checks in queries.values()
        for statement in (query, *(task.offending_query(check) for check in checks))
    ]
    table_queries = {query for query, _ in queries.values()}
    assert all(statement.endswith(f"LIMIT {SAMPLE_ROWS}") for statement in expected if statement not in table_queries)
    checks_sent, anomalies_sent = capture.executed[:len(expected)], capture.executed[len(expected):]
    assert [e.statement for e in checks_sent] == expected
    # Through the warehouse's transactions, the run's window and id bound as parameters.
    assert {e.via for e in checks_sent} == {"transaction"}
    assert {e.paramstyle for e in checks_sent} == {"pyformat"}
    assert all(e.parameters["window_start"] == render.WINDOW_START and not e.error for e in checks_sent)
    # Failing table checks don't stop the anomaly checks: their report joins the failure.
    assert [e.statement for e in anomalies_sent] == (anomaly_statements() if task_id in render.anomaly_tasks() else [])
    assert capture.error is not None, "every check was made to fail, the task should have failed"
    assert str(capture.error).count("FAILED ") == sum(len(checks) for _, checks in queries.values())


@pytest.mark.parametrize("task_id", render.check_tasks())
def test_quality_checks_pass_on_passing_results(captures, task_id):
    """Given passing results the task sends each table's query and no offending-rows query, then
    the anomaly checks' queries, and returns its counts."""
    capture = captures[f"{task_id}[passing]"]
    queries = check_queries(render.rendered_task(task_id, "redshift"))
    anomalies = anomaly_statements() if task_id in render.anomaly_tasks() else []
    assert [e.statement for e in capture.executed] == [query for query, _ in queries.values()] + anomalies
    assert capture.error is None
    assert capture.result["checks"] == sum(len(checks) for _, checks in queries.values())


# --------------------------------------------------------------------------- the warehouse's tables


def first_run_schema_statements(renames: list[str] = ()) -> list[str]:
    """What ensure_tables sends on an empty warehouse: whether schema_version exists, then the
    lock, the look-up of old column names (and ``renames``, the renames it finds to make), every
    DDL statement in CREATE_ORDER and the version record, in one transaction."""
    schema = {f.template: f.sql for f in REDSHIFT_FILES if f.template in render.schema_templates()}
    return [
        schema["schema/schema_version_exists.sql"],
        schema["create/create_tables_lock.sql"],
        schema["schema/columns_to_rename.sql"],
        *renames,
        *(s for table in CREATE_ORDER for s in split_statements(schema[f"create/{table}.sql"])),
        *split_statements(schema["schema/schema_version.sql"]),
    ]


def template_source(template: str) -> str:
    """The text of an include/sql template, as sparkify.schema.ddl_version hashes it."""
    return (SQL_DIR / template).read_text()


def current_version() -> str:
    return ddl_version("redshift", template_source)


@pytest.fixture
def fake_schema_warehouse():
    """The schema task's warehouse and ``_sql`` (the ``render`` it gives ensure_tables), on a
    Redshift connection served by the stand-in, which keeps the recorded schema_version."""
    task = render.rendered_task(render.schema_task(), "redshift")
    capture = fake_redshift.Capture()
    with render.warehouse_connection("redshift"):
        fake_redshift.use_fake_redshift(task.warehouse, capture)
        yield task.warehouse, task._sql, capture


def test_ensure_tables_runs_the_ddl_once(fake_schema_warehouse):
    """On an empty warehouse ensure_tables sends every DDL statement and records the version of
    the DDL templates' text; the next call finds it current and sends no DDL."""
    warehouse, sql, capture = fake_schema_warehouse

    assert ensure_tables(warehouse, sql, template_source, render.RUN_ID) is True
    assert [e.statement for e in capture.executed] == first_run_schema_statements()
    assert capture.schema_version == current_version()
    record = capture.executed[-1].parameters
    assert (record["version"], record["run_id"]) == (current_version(), render.RUN_ID)
    assert capture.commits == 2 and capture.rollbacks == 0
    assert {e.via for e in capture.executed} == {"transaction"}

    del capture.executed[:]
    assert ensure_tables(warehouse, sql, template_source, render.RUN_ID) is False
    assert [e.statement for e in capture.executed] == [
        find_file(REDSHIFT_FILES, "schema/schema_version_exists.sql").sql,
        find_file(REDSHIFT_FILES, "schema/schema_version_current.sql").sql,
    ]
    assert capture.executed[-1].parameters == {"version": current_version()}


def test_ensure_tables_runs_the_ddl_again_when_it_changed(fake_schema_warehouse):
    """A recorded version of other DDL (a table added since) gets every statement again; so does
    a change to the text of any DDL template, after which that text's version is current."""
    warehouse, sql, capture = fake_schema_warehouse
    capture.schema_version = "the version of older DDL"
    assert ensure_tables(warehouse, sql, template_source, render.RUN_ID) is True
    sent = [e.statement for e in capture.executed]
    assert sent[:2] == [find_file(REDSHIFT_FILES, "schema/schema_version_exists.sql").sql,
                        find_file(REDSHIFT_FILES, "schema/schema_version_current.sql").sql]
    assert sent[2:] == first_run_schema_statements()[1:]
    assert capture.schema_version == current_version()

    def edited(template: str) -> str:  # a comment added to the songs DDL
        return template_source(template) + ("-- changed\n" if template == "create/songs.sql" else "")

    del capture.executed[:]
    assert ensure_tables(warehouse, sql, edited, render.RUN_ID) is True
    assert [e.statement for e in capture.executed][2:] == first_run_schema_statements()[1:]
    assert capture.schema_version == ddl_version("redshift", edited) != current_version()
    assert ensure_tables(warehouse, sql, edited, render.RUN_ID) is False


def test_ensure_tables_renames_old_columns_before_the_ddl(fake_schema_warehouse):
    """A warehouse whose tables still have columns under an old name (RENAMED_COLUMNS) gets them
    renamed after the lock and before the DDL, in its transaction, in list order; the look-up
    binds the old names as one parameter; the renames are Redshift SQL. A warehouse without
    them gets no rename (test_ensure_tables_runs_the_ddl_once)."""
    warehouse, sql, capture = fake_schema_warehouse
    capture.schema_version = "the version of the DDL before the rename"
    capture.old_columns = [(table, old) for table, old, _ in reversed(RENAMED_COLUMNS)] + [("songs", "title")]
    assert ensure_tables(warehouse, sql, template_source, render.RUN_ID) is True

    renames = [sql("schema/rename_column.sql", renamed_table=table, old_column=old, new_column=new)
               for table, old, new in RENAMED_COLUMNS]
    sent = capture.executed
    assert [e.statement for e in sent[2:]] == first_run_schema_statements(renames)[1:]
    assert sent[3].parameters == {"old_columns": render.SAMPLE_BINDS["old_columns"]}
    assert {e.via for e in sent} == {"transaction"} and not any(e.error for e in sent)
    assert capture.schema_version == current_version() and capture.rollbacks == 0
    for (table, old, new), statement in zip(RENAMED_COLUMNS, renames):
        tree = parse_redshift(statement)
        assert isinstance(tree, exp.Alter) and tree.this.name == table
        [action] = tree.args["actions"]
        assert isinstance(action, exp.RenameColumn)
        assert (action.this.name, action.args["to"].name) == (old, new)


def test_ddl_version_covers_every_template_the_ddl_renders_from():
    """The version changes with the text of each DDL template and with the dialect; and every
    template the DDL imports is among DDL_TEMPLATES (a macro change would go unseen otherwise)."""
    import jinja2
    from jinja2 import meta

    for template in DDL_TEMPLATES:
        changed = ddl_version("redshift", lambda t, template=template: template_source(t) + ("\n" if t == template else ""))
        assert changed != current_version(), template
    assert ddl_version("postgres", template_source) != current_version()

    env = jinja2.Environment()
    referenced, pending = set(), [f"create/{table}.sql" for table in CREATE_ORDER]
    while pending:
        template = pending.pop()
        if template not in referenced:
            referenced.add(template)
            pending.extend(meta.find_referenced_templates(env.parse(template_source(template))))
    assert referenced <= set(DDL_TEMPLATES)


@pytest.mark.parametrize("task_id", [t for t in render.staging_tasks() if render.etl_dag().get_task(t).create_tables])
def test_staging_records_the_version_of_the_ddl_templates(captures, task_id):
    """A staging task that creates the tables records the version of include/sql's DDL templates,
    read through its own template loader: every such task then finds the others' version current."""
    assert captures[task_id].schema_version == current_version()


def test_staging_tasks_render_the_same_ddl():
    """Every task that runs ensure_tables must render the same DDL: they record the same version
    (of the templates' text), so the first to run creates the tables for all of them."""
    tasks = [task_id for task_id in render.staging_tasks() if render.etl_dag().get_task(task_id).create_tables]
    assert tasks
    renders = set()
    for task_id in tasks:
        task = render.rendered_task(task_id, "redshift")
        with render.warehouse_connection("redshift"):
            renders.add(tuple(task._sql(template, **render.schema_template_context(template))
                              for template in render.schema_templates()))
    assert len(renders) == 1


def _is_query(statement: str) -> bool:
    code = [line for line in statement.splitlines() if line.strip() and not line.lstrip().startswith("--")]
    return bool(code) and code[0].lstrip().upper().startswith("SELECT")


@pytest.mark.parametrize("task_id", render.staging_tasks())
def test_stage_sends_the_rendered_copy_script(captures, task_id):
    capture = captures[task_id]
    task = render.rendered_task(task_id, "redshift")
    # On the stand-in's empty warehouse, staging first creates the tables.
    schema = first_run_schema_statements()
    assert [e.statement for e in capture.executed[: len(schema)]] == schema
    executed = capture.executed[len(schema):]
    # Look-ups (the table's columns, the ledger's versions) come first, each in its own transaction.
    in_transaction = [e for e in executed if e.via == "transaction" and not _is_query(e.statement)]
    script = [s for s in split_statements(render.copy_from_s3_sql(task_id)) if not _is_query(s)]
    assert [e.statement for e in in_transaction[: len(script)]] == script
    assert {e.paramstyle for e in in_transaction} == {"pyformat"}
    assert capture.commits >= 1 and capture.rollbacks == 0

    # The manifest the COPY reads lists every new object, under manifests/ in the data bucket.
    manifest_url = render.copy_variables(task)["manifest_url"]
    assert manifest_url.startswith(f"s3://{task.s3_bucket}/manifests/{task.table}/")
    assert list(capture.uploads) == [manifest_url]
    entries = json.loads(capture.uploads[manifest_url])["entries"]
    assert entries and all(entry["mandatory"] is True for entry in entries)
    expected_keys = [render.EVENT_KEY] if task.table == "staging_events" else list(fake_redshift.SONG_KEYS)
    assert [entry["url"] for entry in entries] == [f"s3://{task.s3_bucket}/{key}" for key in expected_keys]

    # Then one ledger entry per object, in the same transaction.
    ledger = split_statements(find_file(REDSHIFT_FILES, f"stage/stage_load_ledger.sql [{task_id}]").sql)
    rest = [e.statement for e in in_transaction[len(script):]]
    assert rest == ledger * len(expected_keys)


@pytest.mark.parametrize("task_id", render.staging_tasks())
def test_stage_records_redshifts_own_counts_in_the_ledger(captures, task_id):
    """Each object's ledger entry holds what Redshift reported for it (lines scanned, lines
    rejected); the task's totals add up to the rows Redshift said the COPY loaded."""
    task = render.rendered_task(task_id, "redshift")
    ledger_inserts = [e.parameters for e in captures[task_id].executed
                      if e.statement.lstrip().upper().startswith("INSERT INTO STAGE_LOAD_LEDGER")]
    rejected = {key: sum(1 for k, *_ in fake_redshift.COPY_LOAD_ERRORS if k == key) for key in fake_redshift.COPY_LINES_SCANNED}
    expected_keys = [render.EVENT_KEY] if task.table == "staging_events" else list(fake_redshift.SONG_KEYS)
    assert {p["source_key"]: (p["lines_read"], p["rows_staged"], p["rows_rejected"]) for p in ledger_inserts} == {
        key: (fake_redshift.COPY_LINES_SCANNED[key], fake_redshift.COPY_LINES_SCANNED[key] - rejected[key], rejected[key])
        for key in expected_keys
    }
    result = captures[task_id].result
    assert result["records_read"] == result["rows_staged"] + result["rows_rejected"]
    assert result["rows_rejected"] == sum(rejected[key] for key in expected_keys)


def test_stage_names_file_line_and_reason_when_copy_fails_past_maxerror():
    from airflow.sdk.exceptions import AirflowFailException

    capture = run_on_fake_redshift("stage_events", copy_fails=True)
    key, line, column, reason = fake_redshift.COPY_LOAD_ERRORS[0]
    assert isinstance(capture.error, AirflowFailException)
    message = str(capture.error)
    assert f"s3://udacity-dend/{key} line {line}: {column}: {reason}" in message and "max_errors=10" in message
    # The errors were read in the COPY's session after rolling its aborted transaction back
    # (then the transaction rolls back as a whole); no ledger entry.
    sent = [e.statement for e in capture.executed]
    errors_query = find_file(REDSHIFT_FILES, "stage/copy_load_errors.sql [stage_events]").sql
    assert sent[-1] == errors_query and capture.rollbacks == 2
    assert not any("stage_load_ledger" in statement and "INSERT" in statement for statement in sent)


# Redshift's load history: the STL views of a provisioned cluster, the SYS views of Serverless.
STL_VIEWS = re.compile(r"\bstl_\w+", re.I)
SYS_VIEWS = re.compile(r"\bsys_\w+", re.I)


@pytest.mark.parametrize("task_id", render.staging_tasks())
def test_serverless_stage_reads_the_sys_views(captures, task_id):
    """On a Redshift Serverless workgroup (no STL views) the staging task sends the serverless
    renders: the COPY script and Redshift's account of it from sys_load_history, sys_load_detail
    and sys_load_error_detail; a provisioned cluster's run sends no SYS view."""
    serverless = [e.statement for e in captures[f"{task_id}[serverless]"].executed]
    provisioned = [e.statement for e in captures[task_id].executed]
    assert not any(STL_VIEWS.search(code_only(statement)) for statement in serverless)
    assert not any(SYS_VIEWS.search(code_only(statement)) for statement in provisioned)
    for template in render.REDSHIFT_PATH_TEMPLATES:
        rendered = find_file(REDSHIFT_FILES, f"{template} [{task_id}, serverless]").sql
        assert set(split_statements(rendered)) <= {s for statement in serverless for s in split_statements(statement)}, template
    views = {view.lower() for statement in serverless for view in SYS_VIEWS.findall(code_only(statement))}
    assert views == {"sys_load_history", "sys_load_detail", "sys_load_error_detail"}


@pytest.mark.parametrize("task_id", render.staging_tasks())
def test_serverless_stage_records_the_same_counts(captures, task_id):
    """Redshift's figures reach the ledger the same way from the SYS views as from the STL ones."""
    def ledger(run):
        # Every value but the clock's (when the entry was written).
        return sorted(tuple(sorted((k, v) for k, v in e.parameters.items() if not isinstance(v, datetime)))
                      for e in captures[run].executed
                      if e.statement.lstrip().upper().startswith("INSERT INTO STAGE_LOAD_LEDGER"))

    assert ledger(f"{task_id}[serverless]") == ledger(task_id) != []
    serverless, provisioned = captures[f"{task_id}[serverless]"].result, captures[task_id].result
    assert {k: v for k, v in serverless.items() if k != "seconds"} == {k: v for k, v in provisioned.items() if k != "seconds"}


def test_serverless_names_file_line_and_reason_when_copy_fails_past_maxerror():
    capture = run_on_fake_redshift("stage_events", copy_fails=True, serverless=True)
    key, line, column, reason = fake_redshift.COPY_LOAD_ERRORS[0]
    assert f"s3://udacity-dend/{key} line {line}: {column}: {reason}" in str(capture.error)
    errors_query = find_file(REDSHIFT_FILES, "stage/copy_load_errors.sql [stage_events, serverless]").sql
    assert capture.executed[-1].statement == errors_query and "sys_load_error_detail" in errors_query


@pytest.mark.parametrize("extra, serverless", [
    ({"iam": True, "is_serverless": True, "serverless_work_group": "sparkify"}, True),
    ({"iam": True, "cluster_identifier": "sparkify"}, False),
    ({"is_serverless": False}, False),
])
def test_serverless_follows_the_redshift_hooks_extra(monkeypatch, extra, serverless):
    monkeypatch.setenv(render.WAREHOUSE_CONN_ENV, json.dumps({**REDSHIFT_CONNECTION, "extra": extra}))
    assert Warehouse(render.WAREHOUSE_CONN_ID).serverless is serverless
    # A PostgreSQL warehouse is never serverless, whatever its extras say.
    monkeypatch.setenv(render.WAREHOUSE_CONN_ENV, json.dumps({**render.CONNECTIONS["postgres"], "extra": extra}))
    assert Warehouse(render.WAREHOUSE_CONN_ID).serverless is False


def test_redshift_path_sends_exactly_the_redshift_stage_templates(captures):
    # DbApiHook.run sends a file as one string (comments included): compare statement by statement.
    sent = {s for run in render.staging_tasks() for e in captures[run].executed for s in split_statements(e.statement)}
    issued = {
        f.template
        for f in REDSHIFT_FILES
        if f.template and f.template.startswith("stage/") and set(split_statements(f.sql)) <= sent
    }
    stage_templates = {f.template for f in REDSHIFT_FILES if f.template and f.template.startswith("stage/")}
    assert issued == stage_templates - POSTGRES_PATH_TEMPLATES - WHEN_OBJECTS_ARE_MISSING


@pytest.mark.parametrize("run", [run for run in RUNS if run.startswith("load_")])
def test_loads_send_the_rendered_sql(captures, run):
    task_id, _, mode = run.partition("[")
    mode = mode.rstrip("]")
    capture = captures[run]
    task = render.etl_dag().get_task(task_id)
    sent = [e.statement for e in capture.executed]
    if task_id == "load_songplays_fact":
        main = split_statements(find_file(REDSHIFT_FILES, render.template_name(task.sql)).sql)
        # Then the window's hours into loaded_hours, in the same transaction.
        assert sent == main + split_statements(find_file(REDSHIFT_FILES, "load/loaded_hours.sql").sql)
        assert capture.executed[-1].parameters["window_start"] == render.WINDOW_START
        transactions = 1
    else:
        # Each table of the sql dict in order, in the mode's render (time has one for both).
        names = {f.name for f in REDSHIFT_FILES if f.task_id == task_id}
        templates = [render.template_name(source) for source in task.sql.values()]
        assert sent == [
            statement
            for template in templates
            for statement in split_statements(find_file(
                REDSHIFT_FILES, f"{template} [{mode}]" if f"{template} [{mode}]" in names else template).sql)
        ]
        transactions = len(templates)
    assert {e.via for e in capture.executed} == {"transaction"}
    assert {e.paramstyle for e in capture.executed} == {"pyformat"}
    assert capture.commits == transactions and capture.rollbacks == 0


KNOWN_DRIVER_REJECTS = {"stage/stage_load_ledger_versions.sql", "stage/columns.sql"}


def driver_errors(captures):
    return [(run, e) for run, e in all_executed(captures) if e.error]


def test_driver_accepts_bind_parameters_except_known_bug(captures):
    """redshift_connector (paramstyle conversion) accepts every statement the tasks send,
    apart from the known problem pinned by test_driver_accepts_every_bind_parameter."""
    known = {
        statement
        for f in REDSHIFT_FILES
        if f.template in KNOWN_DRIVER_REJECTS
        for statement in split_statements(f.sql)
    }
    unexpected = [
        (run, e.error, e.statement)
        for run, e in driver_errors(captures)
        if not set(split_statements(e.statement)) <= known
    ]
    assert not unexpected


def test_driver_accepts_every_bind_parameter(captures):
    errors = [(run, e.error, e.statement.strip().splitlines()[-1]) for run, e in driver_errors(captures)]
    assert not errors


# --------------------------------------------------------------------------- docs/production.md


def documented_connections() -> dict[str, dict]:
    """The connections JSON of docs/production.md (conn id -> connection), the block that
    holds the warehouse connection the DAGs use."""
    text = (REPO / "docs" / "production.md").read_text()
    for match in re.finditer(r"```json\n(.*?)```", text, re.S):
        block = json.loads(match.group(1))
        if isinstance(block, dict) and WAREHOUSE_CONN_ID in block:
            return block
    raise AssertionError(f"docs/production.md has no JSON block with the {WAREHOUSE_CONN_ID} connection")


def test_documented_connections_work(monkeypatch, tmp_path):
    """The documented connections load with `airflow connections import` and, as
    AIRFLOW_CONN_* JSON, give the Redshift dialect, RedshiftSQLHook with IAM auth and a role
    for COPY."""
    from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.secrets.local_filesystem import load_connections_dict

    documented = documented_connections()
    assert {AWS_CONN_ID, WAREHOUSE_CONN_ID} <= documented.keys()
    (tmp_path / "connections.json").write_text(json.dumps(documented))
    imported = load_connections_dict(str(tmp_path / "connections.json"))
    assert imported[WAREHOUSE_CONN_ID].conn_type == "redshift"
    for conn_id, value in documented.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))

    warehouse = Warehouse(WAREHOUSE_CONN_ID)
    assert warehouse.dialect == "redshift"
    assert isinstance(warehouse.hook, RedshiftSQLHook)
    connection = warehouse.connection
    extra = connection.extra_dejson
    assert extra["iam"] is True and extra["cluster_identifier"] and extra["db_user"] == connection.login
    assert connection.login and connection.schema and not connection.password
    # The hook gets IAM credentials through this AWS connection; the docs define it.
    assert warehouse.hook.aws_conn_id == AWS_CONN_ID

    # The COPY credentials come from the AWS connection's role_arn.
    aws = S3Hook(aws_conn_id=AWS_CONN_ID)
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", aws.conn_config.role_arn)
    assert aws.conn_config.region_name


def test_documented_serverless_connection_reads_the_sys_views(monkeypatch):
    """The Serverless connection of docs/production.md (section 9) makes staging take its
    Serverless branch: the staging SQL rendered for it is the pinned serverless render."""
    text = (REPO / "docs" / "production.md").read_text()
    blocks = [json.loads(match.group(1)) for match in re.finditer(r"```json\n(.*?)```", text, re.S)]
    (serverless,) = [block[WAREHOUSE_CONN_ID] for block in blocks if isinstance(block, dict)
                     and block.get(WAREHOUSE_CONN_ID, {}).get("extra", {}).get("is_serverless")]
    monkeypatch.setenv(render.WAREHOUSE_CONN_ENV, json.dumps(serverless))
    task = copy.copy(render.etl_dag().get_task("stage_events"))
    assert task.warehouse.dialect == "redshift" and task.warehouse.serverless
    assert task._sql("stage/copy_load_errors.sql") == GOLDENS["copy_load_errors_serverless"]


# --------------------------------------------------------------------------- schema drift, anomaly checks


def test_stage_fails_when_a_column_is_null_in_every_copied_row():
    """Redshift's COPY loads NULL for a vanished key: a column NULL in every row the COPY loaded
    fails the task, naming the file and the column, before the rows reach staging (rolled back)."""
    from sparkify.operators.stage import SchemaDrift

    capture = run_on_fake_redshift("stage_events", null_column="userid")
    assert isinstance(capture.error, SchemaDrift)
    message = str(capture.error)
    assert f"s3://udacity-dend/{render.EVENT_KEY}" in message and "column userid is NULL in all" in message
    sent = [fake_redshift._first_word(e.statement) for e in capture.executed]
    # The column counts were asked right after the COPY; nothing moved from the temp table into staging.
    copy = sent.index("COPY")
    counts = find_file(REDSHIFT_FILES, "stage/copy_column_counts.sql [stage_events]").sql
    assert capture.executed[copy + 1].statement == counts
    assert "INSERT" not in sent[copy:]
    assert capture.rollbacks == 1  # the COPY's transaction (the look-ups before it commit)

    # A key allowed to be absent stages.
    allowed = run_on_fake_redshift("stage_events", null_column="userid", allow_absent_keys=["userId"])
    assert allowed.error is None and allowed.commits >= 1 and allowed.result["rows_staged"] > 0


@pytest.mark.parametrize("task_id", render.anomaly_tasks())
def test_anomaly_checks_send_the_rendered_metrics_query(captures, task_id):
    """After the table checks (failing or not) the task reads the staged table's columns and sends
    the pinned metrics query, binding the window and the baseline's start; on the stand-in's empty
    window every metric passes unjudged."""
    from sparkify.anomalies import FIXED_METRICS, STAGED_TABLE

    expected = anomaly_statements()
    baseline_days = render.etl_dag().params["anomaly_baseline_days"]
    window = {"window_start": render.WINDOW_START, "window_end": render.WINDOW_END}
    for run in (task_id, f"{task_id}[passing]"):
        sent = captures[run].executed[-len(expected):]
        assert [e.statement for e in sent] == expected
        columns, *metrics = sent
        assert columns.parameters == {"table": STAGED_TABLE}
        for executed in metrics:
            assert executed.parameters == {**window, "baseline_start": render.WINDOW_START - timedelta(days=baseline_days)}
            parse_redshift(bind(executed.statement, executed.parameters))
        assert {e.via for e in sent} == {"transaction"} and {e.paramstyle for e in sent} == {"pyformat"}
    anomalies = captures[f"{task_id}[passing]"].result["anomalies"]
    assert anomalies == {"metrics": len(FIXED_METRICS) + len(render.staging_columns(STAGED_TABLE)), "judged": 0}
