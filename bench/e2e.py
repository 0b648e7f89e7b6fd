"""Section 6, end to end: backfill throughput of ``sparkify_etl`` next to Airflow's own floor.

On one stack, in one session, three DAGs are backfilled hour by hour through the scheduler:

* ``sparkify_etl`` itself;
* ``bench_noop_same_graph``: sparkify_etl's exact task graph, every task a real task process
  that does nothing (what Airflow alone charges for our graph);
* ``bench_noop_minimal``: stage -> load -> check, three no-op tasks (the floor for any design).

Round r backfills day r of the sample data with each DAG in turn, the order rotated each round,
so background load hits all three alike. A run's cost is the backfill's wall time (backfill
created -> last run ended) over its runs. Then the hourly-run latency: one hour at a time
(queued -> success), ours and the minimal no-op DAG alternately, on the last day's data.

The no-op DAGs are written into the stack's own DAGs folder (a temp dir), never into dags/.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import data
from bench.stats import Figure, summary

if TYPE_CHECKING:
    from bench.sections import Bench

log = logging.getLogger("bench")

ETL_DAG = "sparkify_etl"
SAME_GRAPH_DAG = "bench_noop_same_graph"
MINIMAL_DAG = "bench_noop_minimal"
MINIMAL_GRAPH = {"stage": ["load"], "load": ["check"], "check": []}
HOURS_IN_PROJECTION = 720  # a 30-day hourly backfill
LATENCY_RUNS = 3
SECTION = "6. End to end"

NOOP_DAG = '''"""{doc}"""
import pendulum
from airflow.sdk import DAG, BaseOperator
from airflow.timetables.interval import CronDataIntervalTimetable


class NoOp(BaseOperator):
    """A real task process that does nothing (EmptyOperator would never start one)."""

    def execute(self, context):
        pass


DOWNSTREAM = {downstream}

with DAG({dag_id!r}, schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
         start_date=pendulum.datetime(2018, 11, 1, tz="UTC"), catchup=False, max_active_runs=4):
    tasks = {{task_id: NoOp(task_id=task_id) for task_id in DOWNSTREAM}}
    for task_id, children in DOWNSTREAM.items():
        for child in children:
            tasks[task_id] >> tasks[child]
'''


def noop_dag_source(dag_id: str, downstream: dict[str, list[str]], doc: str) -> str:
    return NOOP_DAG.format(doc=doc, dag_id=dag_id, downstream=json.dumps(downstream, indent=4))


def write_dags(dags_dir: Path, code_dags: Path, etl_graph: dict[str, list[str]]) -> None:
    """The stack's DAGs folder: sparkify_etl's file (linked) and the two no-op DAGs. The other
    project DAGs stay out: sparkify_analytics, scheduled on our Assets, would compete for the cores."""
    dags_dir.mkdir(parents=True, exist_ok=True)
    link = dags_dir / "sparkify_etl.py"
    if not link.exists():
        link.symlink_to(code_dags / "sparkify_etl.py")
    (dags_dir / f"{SAME_GRAPH_DAG}.py").write_text(noop_dag_source(
        SAME_GRAPH_DAG, etl_graph, "No-op tasks in sparkify_etl's exact graph: Airflow's own cost of that graph."))
    (dags_dir / f"{MINIMAL_DAG}.py").write_text(noop_dag_source(
        MINIMAL_DAG, MINIMAL_GRAPH, "stage -> load -> check, no-op tasks: the floor for any design."))


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def backfill(api, start: datetime, hours: int, timeout: float = 3600) -> dict[str, Any]:
    """Backfill ``hours`` runs from ``start`` and wait; the wall time is measured from the
    request to the end of the last run, as the API reports them."""
    from scripts.pipeline import iso, wait_for

    end = start + timedelta(hours=hours)
    requested = datetime.now(timezone.utc)
    backfill_id = api.backfill(start, end, run_backwards=False)
    runs = wait_for(api, lambda: api.runs(run_type="backfill", logical_date_gte=iso(start), logical_date_lt=iso(end)),
                    done=lambda: api.backfill_done(backfill_id), timeout=timeout)
    failed = [run["dag_run_id"] for run in runs if run["state"] != "success"]
    if failed or len(runs) != hours:
        raise RuntimeError(f"{api.dag_id}: {len(runs)} runs of {hours}, failed: {failed[:5]}")
    wall = (max(_parse(run["end_date"]) for run in runs) - requested).total_seconds()
    return {"wall_s": wall, "per_run_s": wall / hours, "runs": runs, "start": iso(start)}


def one_run(api, hour: datetime) -> float:
    """Queued -> success of one hourly run, alone on the stack."""
    result = backfill(api, hour, 1)
    run = result["runs"][0]
    return (_parse(run["end_date"]) - _parse(run["queued_at"])).total_seconds()


def run(bench: Bench) -> None:
    from scripts.pipeline import AirflowAPI

    cfg, stack = bench.cfg, bench.stack
    folder = data.dataset(cfg.data_dir, "e2e", songs=cfg.e2e_songs, days=cfg.e2e_rounds + 1,
                          events_per_day=cfg.e2e_events_per_day)
    data.upload_dataset(bench.client, stack.bucket, folder)
    etl_graph = bench.worker("task_graph", {})["downstream"]
    write_dags(Path(stack.env()["AIRFLOW__CORE__DAGS_FOLDER"]), Path(stack.config.repo_root) / "dags", etl_graph)
    started = time.monotonic()
    stack.up()
    up_seconds = time.monotonic() - started
    try:
        apis = {dag_id: AirflowAPI(stack.api_url, dag_id) for dag_id in (ETL_DAG, SAME_GRAPH_DAG, MINIMAL_DAG)}
        for api in apis.values():
            api.login()
            api.wait_for_dag(timeout=300)
            api.unpause()
        _measure(bench, apis, up_seconds, len(etl_graph))
    finally:
        stack.stop_airflow()


def _measure(bench: Bench, apis: dict, up_seconds: float, etl_tasks: int) -> None:
    cfg = bench.cfg
    first_day = datetime(2018, 11, 1, tzinfo=timezone.utc)
    order = list(apis)
    results: dict[str, list[dict]] = {dag_id: [] for dag_id in apis}
    for round_number in range(cfg.e2e_rounds):
        day = first_day + timedelta(days=round_number)
        for dag_id in order[round_number % len(order):] + order[:round_number % len(order)]:
            result = backfill(apis[dag_id], day, cfg.e2e_hours)
            log.info("round %d: %s %d runs in %.0f s (%.2f s/run)", round_number + 1, dag_id, cfg.e2e_hours,
                     result["wall_s"], result["per_run_s"])
            results[dag_id].append(result)
    per_run = {dag_id: [r["per_run_s"] for r in rounds] for dag_id, rounds in results.items()}
    graphs = {ETL_DAG: f"{etl_tasks} tasks", SAME_GRAPH_DAG: f"{etl_tasks} no-op tasks, same edges",
              MINIMAL_DAG: "3 no-op tasks"}
    for dag_id, values in per_run.items():
        bench.add(Figure.of(SECTION, f"{dag_id}: s per hourly run ({cfg.e2e_hours}-run backfill, {graphs[dag_id]})",
                            summary(values), "s", note=f"{len(values)} rounds"))
    from bench.sections import paired

    bench.add(Figure.of(SECTION, "ours / minimal no-op DAG (per run)", paired(per_run[ETL_DAG], per_run[MINIMAL_DAG]),
                        "x", target="<= 2.0"))
    bench.add(Figure.of(SECTION, "ours / no-op DAG of the same graph (per run)",
                        paired(per_run[ETL_DAG], per_run[SAME_GRAPH_DAG]), "x"))
    projection = {dag_id: statistics.median(values) * HOURS_IN_PROJECTION / 60 for dag_id, values in per_run.items()}
    bench.add(Figure(SECTION, f"{HOURS_IN_PROJECTION}-run (30-day) backfill, projected: ours", projection[ETL_DAG],
                     "min", note=f"same-graph no-op {projection[SAME_GRAPH_DAG]:.0f} min, "
                                 f"minimal no-op {projection[MINIMAL_DAG]:.0f} min; stack up {up_seconds:.0f} s"))

    latency: dict[str, list[float]] = {ETL_DAG: [], MINIMAL_DAG: []}
    last_day = first_day + timedelta(days=cfg.e2e_rounds)
    for hour in range(LATENCY_RUNS):
        for dag_id in latency:
            latency[dag_id].append(one_run(apis[dag_id], last_day + timedelta(hours=hour)))
    for dag_id, values in latency.items():
        bench.add(Figure.of(SECTION, f"{dag_id}: one hourly run alone, queued -> success", summary(values), "s"))

    tis = {run["dag_run_id"]: apis[ETL_DAG].task_instances(run["dag_run_id"])
           for result in results[ETL_DAG] for run in result["runs"]}
    per_task = task_medians([ti for instances in tis.values() for ti in instances])
    for task, stats in per_task.items():
        bench.add(Figure(SECTION, f"{ETL_DAG} task {task}: median duration", stats["median_s"], "s",
                         note=f"n={stats['n']}; queued -> running {stats['median_queue_s']:.2f} s"))
    bench.details["e2e"] = {
        "per_run_s": per_run, "latency_s": latency,
        "backfills": {dag_id: [{k: v for k, v in r.items() if k != "runs"} for r in rounds]
                      for dag_id, rounds in results.items()},
        "task_instances": tis,
    }


def task_medians(instances: list[dict]) -> dict[str, dict[str, float]]:
    """Median duration and queued -> running wait of each task of the measured runs."""
    durations: dict[str, list[float]] = {}
    waits: dict[str, list[float]] = {}
    for ti in instances:
        if ti.get("start_date") and ti.get("end_date"):
            begin = _parse(ti["start_date"])
            durations.setdefault(ti["task_id"], []).append((_parse(ti["end_date"]) - begin).total_seconds())
            if ti.get("queued_when"):
                waits.setdefault(ti["task_id"], []).append((begin - _parse(ti["queued_when"])).total_seconds())
    return {
        task: {"n": len(values), "median_s": statistics.median(values),
               "median_queue_s": statistics.median(waits[task]) if waits.get(task) else float("nan")}
        for task, values in sorted(durations.items(), key=lambda kv: -statistics.median(kv[1]))
    }
