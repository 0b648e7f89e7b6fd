"""Run tasks of ``sparkify_etl`` directly, in a process of their own, without Airflow's metadata DB.

    PYTHONPATH=.:plugins python tests/faults/fault_harness.py --run-id ID --start ISO --end ISO (all | TASK [TASK ...])

Each task is taken from the parsed DAG (so its real arguments, templates and connections
are used), its template fields are rendered with the window as the run's ``start``/``end``
params, and its ``execute`` is called, like a task attempt would. Nothing touches the
metadata database, so the process survives whatever happens to it and a fault in the
warehouse, S3 or this process itself only hits the task.

Progress goes to stdout as single lines the tests wait for:
``TASK_START <task_id>``, ``TASK_DONE <task_id> <json result>``. Exit code 0 when every
task succeeded, 1 (with the traceback on stderr) when one raised.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.dags["sparkify_etl"]


def task_order(dag) -> list[str]:
    """Every task id, upstream before downstream (ties by id, so the order is stable)."""
    pending = {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}
    order: list[str] = []
    while pending:
        ready = sorted(task_id for task_id, upstream in pending.items() if not upstream - set(order))
        if not ready:
            raise RuntimeError(f"cycle among {sorted(pending)}")
        order.append(ready[0])
        del pending[ready[0]]
    return order


def task_context(dag, run_id: str, start: str, end: str) -> dict:
    """The part of a task's template context the DAG's templates use."""
    params = {name: param.resolve() if hasattr(param, "resolve") else param for name, param in dag.params.items()}
    params.update({"start": start, "end": end})
    variables = {
        "sparkify_bucket": os.environ["AIRFLOW_VAR_SPARKIFY_BUCKET"],
        "sparkify_region": os.environ["AIRFLOW_VAR_SPARKIFY_REGION"],
    }
    return {
        "run_id": run_id,
        "params": params,
        "var": {"value": variables},
        "data_interval_start": None,
        "data_interval_end": None,
    }


def run_tasks(task_ids: list[str], run_id: str, start: str, end: str) -> int:
    dag = load_dag()
    if task_ids == ["all"]:
        task_ids = task_order(dag)
    for task_id in task_ids:
        task = dag.get_task(task_id)
        context = task_context(dag, run_id, start, end)
        print(f"TASK_START {task_id}", flush=True)
        try:
            task.render_template_fields(context)
            result = task.execute(context)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            print(f"TASK_FAILED {task_id}", flush=True)
            return 1
        print(f"TASK_DONE {task_id} {json.dumps(result, default=str)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("tasks", nargs="+")
    args = parser.parse_args(argv)
    return run_tasks(args.tasks, args.run_id, args.start, args.end)


if __name__ == "__main__":
    sys.exit(main())
