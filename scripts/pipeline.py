"""Drive ``sparkify_etl`` on the local stack through Airflow's REST API.

    python -m scripts.pipeline run --start 2018-11-01T00:00:00Z --end 2018-11-01T06:00:00Z
    python -m scripts.pipeline backfill --start 2018-11-01T00:00:00Z --end 2018-11-02T00:00:00Z
    python -m scripts.pipeline demo
    python -m scripts.pipeline summary

``run`` triggers one manual run for the window [start, end) (the DAG's params);
``backfill`` creates an Airflow backfill, one run per hour starting in [start, end), which
the scheduler executes. Both wait, print a summary and exit non-zero if a run failed.
The environment comes from ``python -m scripts.stack env`` (the Makefile sets it); its
``PYTHONPATH`` holds plugins/, where the star tables are named (``sparkify.catalog``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

import requests
from sparkify.catalog import STAR_TABLES

DAG_ID = "sparkify_etl"
TERMINAL = {"success", "failed"}
DEMO_WINDOW = ("2018-11-01T00:00:00Z", "2018-11-02T00:00:00Z")


class PipelineError(RuntimeError):
    pass


def parse_hour(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    if moment != moment.replace(minute=0, second=0, microsecond=0):
        raise argparse.ArgumentTypeError(f"{value} is not a whole UTC hour")
    return moment


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class AirflowAPI:
    """The few REST calls the Makefile targets need (Airflow 3 ``/api/v2``)."""

    def __init__(self, base_url: str, dag_id: str = DAG_ID):
        self.base_url = base_url.rstrip("/")
        self.dag_id = dag_id
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self.session.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)
        except requests.ConnectionError:
            raise PipelineError(f"Airflow's API at {self.base_url} is not answering; is the stack up? (make up)") from None
        if response.status_code >= 400:
            raise PipelineError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else {}

    def login(self) -> None:
        """The local stack runs the simple auth manager with every user an admin: no credentials."""
        token = self._call("GET", "/auth/token")["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def wait_for_dag(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            errors = self._call("GET", "/api/v2/importErrors").get("import_errors", [])
            if errors:
                raise PipelineError("DAG import errors:\n" + "\n".join(f"{e['filename']}: {e['stack_trace']}" for e in errors))
            try:
                self._call("GET", f"/api/v2/dags/{self.dag_id}")
                return
            except PipelineError:
                time.sleep(2)
        raise PipelineError(f"{self.dag_id} did not appear within {timeout:.0f}s; see .state/logs/dag-processor.log")

    def unpause(self) -> None:
        self._call("PATCH", f"/api/v2/dags/{self.dag_id}", json={"is_paused": False})

    def trigger(self, conf: dict) -> str:
        run = self._call("POST", f"/api/v2/dags/{self.dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def backfill(self, start: datetime, end: datetime, run_backwards: bool) -> int:
        backfill = self._call("POST", "/api/v2/backfills", json={
            "dag_id": self.dag_id,
            "from_date": iso(start),
            # Runs are named by their interval start; the API's bounds are inclusive.
            "to_date": iso(end - timedelta(hours=1)),
            "run_backwards": run_backwards,
            "reprocess_behavior": "completed",
            "max_active_runs": 4,
            "dag_run_conf": {},
        })
        return backfill["id"]

    def runs(self, **filters) -> list[dict]:
        params = {"limit": 100, "order_by": "logical_date", **filters}
        runs, offset = [], 0
        while True:
            page = self._call("GET", f"/api/v2/dags/{self.dag_id}/dagRuns", params={**params, "offset": offset})
            runs.extend(page["dag_runs"])
            offset += len(page["dag_runs"])
            if not page["dag_runs"] or offset >= page["total_entries"]:
                return runs

    def run(self, run_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}")

    def task_instances(self, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances"
        return self._call("GET", path, params={"limit": 100})["task_instances"]

    def backfill_done(self, backfill_id: int) -> bool:
        return self._call("GET", f"/api/v2/backfills/{backfill_id}").get("completed_at") is not None


def wait_for(api: AirflowAPI, list_runs, done=lambda: True, timeout: float = 3600) -> list[dict]:
    """Poll until every run is finished (and ``done()``); print progress when it changes."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        runs = list_runs()
        states = {state: sum(run["state"] == state for run in runs) for state in ("queued", "running", "success", "failed")}
        progress = ", ".join(f"{count} {state}" for state, count in states.items() if count)
        if progress != last:
            print(f"  {len(runs)} runs: {progress}", flush=True)
            last = progress
        if runs and all(run["state"] in TERMINAL for run in runs) and done():
            return runs
        time.sleep(2)
    raise PipelineError(f"runs did not finish within {timeout:.0f}s")


def warehouse_counts() -> dict[str, int]:
    import psycopg

    with psycopg.connect(os.environ["SPARKIFY_WAREHOUSE_CONNINFO"]) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in STAR_TABLES}


def summarize(api: AirflowAPI, runs: list[dict]) -> bool:
    failed = [run for run in runs if run["state"] != "success"]
    checks = {"success": 0, "failed": 0, "other": 0}
    failing_tasks = []
    for run in runs:
        for ti in api.task_instances(run["dag_run_id"]):
            if ti["task_id"] == "quality_checks":
                checks[ti["state"] if ti["state"] in checks else "other"] += 1
            if ti["state"] in ("failed", "upstream_failed"):
                failing_tasks.append(f"{run['dag_run_id']}: {ti['task_id']} {ti['state']}")
    print()
    print(f"Runs: {len(runs) - len(failed)} succeeded, {len(failed)} failed")
    try:
        counts = warehouse_counts()
        print("Star schema rows: " + ", ".join(f"{table} {count:,}" for table, count in counts.items()))
    except Exception as err:  # an empty warehouse before the first run has no tables yet
        print(f"Star schema rows: unavailable ({err.__class__.__name__}: {str(err).strip()[:120]})")
    print(f"Data-quality checks: {checks['success']} passed, {checks['failed']} failed"
          + (f", {checks['other']} did not run" if checks["other"] else ""))
    for line in failing_tasks[:20]:
        print(f"  FAILED {line}")
    print(f"Airflow UI: {api.base_url}/dags/{DAG_ID}  (local stack: no login needed, every user is admin)")
    print_analytics_report(api)
    return not failed


ANALYTICS_DAG_ID = "sparkify_analytics"


def print_analytics_report(api: AirflowAPI, timeout: float = 180) -> None:
    """Where the newest analytics report is. ``sparkify_analytics`` is scheduled on the five
    star-schema Assets, so first wait while a report run is queued or running, or about to be
    created (all five Assets updated since the last report)."""
    bucket = os.environ.get("SPARKIFY_BUCKET") or os.environ.get("AIRFLOW_VAR_SPARKIFY_BUCKET", "")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            active = api._call("GET", f"/api/v2/dags/{ANALYTICS_DAG_ID}/dagRuns",
                               params={"state": ["queued", "running"], "limit": 1})["total_entries"]
            try:
                pending = api._call("GET", f"/api/v2/dags/{ANALYTICS_DAG_ID}/assets/queuedEvents")["total_entries"]
            except PipelineError:  # 404: nothing queued
                pending = 0
            if not active and pending < len(STAR_TABLES):
                break
            time.sleep(2)
        import boto3

        s3 = boto3.client("s3", endpoint_url=os.environ.get("SPARKIFY_S3_ENDPOINT") or None)
        latest = json.loads(s3.get_object(Bucket=bucket, Key="reports/latest.json")["Body"].read())
    except Exception as err:  # no analytics run yet, or the DAG is missing/paused
        print(f"Analytics report: none yet ({err.__class__.__name__}); see {api.base_url}/dags/{ANALYTICS_DAG_ID}")
        return
    prefix, endpoint = latest["prefix"], os.environ.get("SPARKIFY_S3_ENDPOINT", "")
    print(f"Analytics report: s3://{bucket}/{latest['index_key']}  (run {latest['run_id']}, {latest['generated_at']})")
    print(f"  files: {', '.join(latest['files'])}")
    link = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": latest["index_key"]}, ExpiresIn=3600)
    print(f"  open:  {link}  (presigned, valid 1 h)")
    endpoint_flag = f" --endpoint-url {endpoint}" if endpoint else ""
    print(f"  fetch: aws s3 cp --recursive s3://{bucket}/{prefix}/ ./report/{endpoint_flag}  (then open report/index.html)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.pipeline", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "backfill"):
        command = commands.add_parser(name)
        command.add_argument("--start", type=parse_hour, required=True, help="first hour, UTC (e.g. 2018-11-01T00:00:00Z)")
        command.add_argument("--end", type=parse_hour, required=True, help="end of the window, exclusive")
        if name == "backfill":
            command.add_argument("--backwards", action="store_true", help="run the newest hour first")
    commands.add_parser("demo")
    commands.add_parser("summary")
    args = parser.parse_args(argv)

    api = AirflowAPI(os.environ.get("AIRFLOW__API__BASE_URL", "http://127.0.0.1:18080"))
    try:
        api.login()
        api.wait_for_dag()
        api.unpause()
        if args.command == "summary":
            return 0 if summarize(api, api.runs()[-24:]) else 1
        if args.command == "demo":
            args.command, args.start, args.end, args.backwards = "backfill", *map(parse_hour, DEMO_WINDOW), False
        if args.start >= args.end:
            raise PipelineError("--start must be before --end")
        started = time.monotonic()
        if args.command == "run":
            run_id = api.trigger({"start": iso(args.start), "end": iso(args.end)})
            print(f"Triggered {run_id} for [{iso(args.start)}, {iso(args.end)})")
            runs = wait_for(api, lambda: [api.run(run_id)])
        else:
            backfill_id = api.backfill(args.start, args.end, args.backwards)
            hours = int((args.end - args.start) / timedelta(hours=1))
            print(f"Backfill {backfill_id}: {hours} hourly runs in [{iso(args.start)}, {iso(args.end)})")
            runs = wait_for(
                api,
                lambda: [run for run in api.runs(run_type="backfill", logical_date_gte=iso(args.start),
                                                 logical_date_lt=iso(args.end))],
                done=lambda: api.backfill_done(backfill_id),
            )
        print(f"Finished in {time.monotonic() - started:.0f}s")
        return 0 if summarize(api, runs) else 1
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
