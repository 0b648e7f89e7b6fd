"""One measurement in a fresh process: ``python -m bench.worker JOB 'json-args'``.

The parent (:func:`bench.env.run_worker`) sets the environment (connections, bucket,
warehouse database). The worker prints one ``BENCH_RESULT {json}`` line on stdout; logs go
to stderr. Peak RSS is this process's ``ru_maxrss``; ``rss_before_kb`` is the peak before the
measured call (imports, connections), so ``rss_peak_kb - rss_before_kb`` is what the call added.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
SQL_DIR = REPO / "include" / "sql"
EPOCH = datetime(1970, 1, 1)

# staging_events data columns, in the JSONPaths order, and the JSON key each one comes from.
EVENT_COLUMNS = (
    ("artist", "artist"), ("auth", "auth"), ("firstname", "firstName"), ("gender", "gender"),
    ("iteminsession", "itemInSession"), ("lastname", "lastName"), ("length", "length"), ("level", "level"),
    ("location", "location"), ("method", "method"), ("page", "page"), ("registration", "registration"),
    ("sessionid", "sessionId"), ("song", "song"), ("status", "status"), ("ts", "ts"),
    ("useragent", "userAgent"), ("userid", "userId"),
)
EVENT_TABLE_COLUMNS = [column for column, _ in EVENT_COLUMNS] + ["source_key", "source_line"]


def _usage() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"rss_kb": own.ru_maxrss, "cpu_user_s": own.ru_utime, "cpu_sys_s": own.ru_stime}


def _measure(call: Callable[[], Any], profile: str | None = None) -> dict[str, Any]:
    before = _usage()
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.002)
        profiler.start()
    started = time.perf_counter()
    value = call()
    ended = time.perf_counter()
    seconds = ended - started
    if profiler is not None:
        profiler.stop()
        Path(profile).parent.mkdir(parents=True, exist_ok=True)
        Path(profile).with_suffix(".txt").write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        Path(profile).with_suffix(".html").write_text(profiler.output_html())
    after = _usage()
    return {
        "seconds": seconds,
        "started": started,
        "ended": ended,
        "value": value,
        "rss_before_kb": before["rss_kb"],
        "rss_peak_kb": after["rss_kb"],
        "cpu_s": (after["cpu_user_s"] - before["cpu_user_s"]) + (after["cpu_sys_s"] - before["cpu_sys_s"]),
    }


def _sql_dir() -> Path:
    """include/sql, or the one next to a patched plugins copy (BENCH_PLUGINS_DIR/../include/sql)."""
    patched = os.environ.get("BENCH_PLUGINS_DIR")
    if patched and (Path(patched).parent / "include" / "sql").is_dir():
        return Path(patched).parent / "include" / "sql"
    return SQL_DIR


def _template_dag(dag_id: str):
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, template_searchpath=[str(_sql_dir())])


# --------------------------------------------------------------------------- jobs


def job_stage_ours(args: dict) -> dict:
    """Our StageToRedshiftOperator's PostgreSQL path: ``execute`` with a minimal context."""
    from sparkify.catalog import AWS_CONN_ID, WAREHOUSE_CONN_ID
    from sparkify.operators import StageToRedshiftOperator

    operator = StageToRedshiftOperator(
        task_id=f"stage_{args['table']}",
        dag=_template_dag("bench_stage"),
        table=args["table"],
        s3_bucket=os.environ["SPARKIFY_BUCKET"],
        s3_key=args["key"],
        json_format=args["json_format"],
        max_errors=args.get("max_errors", 0),
        aws_conn_id=AWS_CONN_ID,
        redshift_conn_id=WAREHOUSE_CONN_ID,
    )
    import sparkify

    result = _measure(lambda: operator.execute({"run_id": args["run_id"]}), args.get("profile"))
    result["rows"] = result["value"].get("rows_staged", 0)
    result["objects"] = result["value"].get("objects_new", 0)
    result["plugins"] = str(Path(sparkify.__file__).resolve().parent.parent)
    return result


def parse_events_jsonl(source_key: str, path: str) -> Iterator[tuple]:
    """JSON-lines parser for S3ToSqlOperator: one row per non-blank line, staging_events columns.

    A straightforward user-written parser (orjson, the same key mapping as log_json_path.json,
    ``ts`` epoch ms -> timestamp, empty strings -> NULL); no validation or rejects handling.
    """
    import orjson

    keys = [key for _, key in EVENT_COLUMNS]
    ts_index = keys.index("ts")
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            record = orjson.loads(line)
            row = [record.get(key) for key in keys]
            row = [None if value == "" else value for value in row]
            row[ts_index] = EPOCH + timedelta(milliseconds=row[ts_index])
            row.extend((source_key, number))
            yield tuple(row)


def job_s3_to_sql(args: dict) -> dict:
    """The amazon provider's S3ToSqlOperator into the same table and columns."""
    from functools import partial

    from airflow.providers.amazon.aws.transfers.s3_to_sql import S3ToSqlOperator
    from sparkify.catalog import AWS_CONN_ID, WAREHOUSE_CONN_ID

    operator = S3ToSqlOperator(
        task_id="s3_to_sql",
        s3_bucket=os.environ["SPARKIFY_BUCKET"],
        s3_key=args["key"],
        table=args["table"],
        column_list=EVENT_TABLE_COLUMNS,
        parser=partial(parse_events_jsonl, args["key"]),
        commit_every=args.get("commit_every", 1000),
        sql_conn_id=WAREHOUSE_CONN_ID,
        aws_conn_id=AWS_CONN_ID,
    )
    # Split its time: download to a temp file, then insert_rows (parse + INSERTs).
    marks: dict[str, float] = {}
    hook = operator.db_hook
    insert_rows = hook.insert_rows

    def timed_insert_rows(*a, **k):
        marks["insert_start"] = time.perf_counter()
        try:
            return insert_rows(*a, **k)
        finally:
            marks["insert_end"] = time.perf_counter()

    hook.insert_rows = timed_insert_rows
    result = _measure(lambda: operator.execute({"run_id": args["run_id"]}), args.get("profile"))
    result["value"] = None
    result["download_s"] = marks["insert_start"] - result["started"]
    result["insert_s"] = marks["insert_end"] - marks["insert_start"]
    return result


def job_raw_copy(args: dict) -> dict:
    """``COPY ... FROM STDIN (FORMAT csv)`` of a prepared local CSV: the physical limit."""
    import psycopg

    columns = ", ".join(args["columns"])
    sql = f"COPY {args['table']} ({columns}) FROM STDIN (FORMAT csv)"

    def copy() -> None:
        with psycopg.connect(os.environ["SPARKIFY_WAREHOUSE_CONNINFO"]) as conn:
            with conn.cursor() as cursor, cursor.copy(sql) as copy, open(args["csv"], "rb") as source:
                while chunk := source.read(1 << 20):
                    copy.write(chunk)
            conn.commit()

    return _measure(copy)


def job_get_loop(args: dict) -> dict:
    """A boto3 GET loop over the same keys (listed before the clock starts): serial, or with
    ``threads`` > 1 a thread pool sharing one client (the endpoint's ceiling for any client)."""
    import boto3
    from botocore.config import Config

    threads = int(args.get("threads", 1))
    client = boto3.client(
        "s3", endpoint_url=os.environ["SPARKIFY_S3_ENDPOINT"], aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
        config=Config(proxies={}, max_pool_connections=max(10, threads)),
    )
    bucket = os.environ["SPARKIFY_BUCKET"]
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=args["prefix"])
        for item in page.get("Contents", [])
        if not item["Key"].endswith("/")
    ]

    def get(key: str) -> int:
        return len(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def loop() -> int:
        if threads <= 1:
            return sum(get(key) for key in keys)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(get, keys))

    result = _measure(loop)
    result["objects"] = len(keys)
    result["bytes"] = result.pop("value")
    return result


def job_parse(args: dict) -> dict:
    """Time a DagBag of one folder (the class is imported first, outside the clock)."""
    import gc

    from airflow.dag_processing.dagbag import DagBag

    # As the dag-processor does before it starts parsers: collections then skip Airflow's own
    # objects, so a GC pause doesn't land in one side at random.
    gc.freeze()
    result = _measure(lambda: DagBag(args["folder"]))
    bag = result.pop("value")
    result["dags"] = sorted(bag.dag_ids)
    result["import_errors"] = {str(k): str(v)[-500:] for k, v in bag.import_errors.items()}
    return result


def job_dag_window(args: dict) -> dict:
    """One manual run of sparkify_etl over [start, end) in process (dag.test), as the tests do."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ.get("BENCH_DAGS_DIR") or str(REPO / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"import errors: {bag.import_errors}")
    dag = bag.dags["sparkify_etl"]
    for task in dag.tasks:
        task.retries = 0
    if getattr(dag, "deadline", None):
        dag.deadline = None  # as tests/support/pipeline.py: dag.test() in 3.3.2 can't resolve Deadline Alerts
    conf = {"start": args["start"], "end": args["end"]}
    # skip_checks (filling a warehouse, not measured): mark the quality checks successful unrun.
    skip = {"mark_success_pattern": r"quality_checks$"} if args.get("skip_checks") else {}
    result = _measure(lambda: dag.test(run_conf=conf, **skip), args.get("profile"))
    run = result.pop("value")
    tasks = {}
    for ti in run.get_task_instances():
        duration = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else None
        tasks[ti.task_id] = {"state": str(ti.state), "duration_s": duration}
    result["state"] = str(run.state)
    result["tasks"] = tasks
    result["task_seconds"] = sum(t["duration_s"] or 0.0 for t in tasks.values())
    if result["state"] != "success":
        raise RuntimeError(f"run {run.run_id} ended {run.state}: {tasks}")
    return result


def job_task_graph(args: dict) -> dict:
    """sparkify_etl's tasks and their downstream tasks, for the no-op DAG of the same graph."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ.get("BENCH_DAGS_DIR") or str(REPO / "dags"))
    dag = bag.dags["sparkify_etl"]
    return {"downstream": {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}}


JOBS = {
    "stage_ours": job_stage_ours,
    "s3_to_sql": job_s3_to_sql,
    "raw_copy": job_raw_copy,
    "get_loop": job_get_loop,
    "parse": job_parse,
    "dag_window": job_dag_window,
    "task_graph": job_task_graph,
}


def main(argv: list[str]) -> int:
    job, raw = argv[0], argv[1] if len(argv) > 1 else "{}"
    import logging

    # Operator logs (self.log) to stderr, i.e. the worker's log file, as in a task log.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if "BENCH_PLUGINS_DIR" in os.environ:  # compare a patched copy of plugins/ (see README)
        sys.path.insert(0, os.environ["BENCH_PLUGINS_DIR"])
    if "BENCH_DAGS_DIR" in os.environ:  # ... and a copy of dags/ (Airflow not imported yet)
        os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.environ["BENCH_DAGS_DIR"]
    result = JOBS[job](json.loads(raw))
    result.pop("value", None)
    print("BENCH_RESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
