"""What an alert says: a failed task or a run that missed its deadline, as a title, a text and
a link to the Airflow UI (``sparkify.alerts.SparkifyNotifier`` logs and sends them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote


def describe_task_failure(context: Mapping[str, Any]) -> dict[str, str]:
    """A failed task: its DAG, run, try, error and window, with a link to its log."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", None) or context.get("run_id", "?")
    try_number = getattr(ti, "try_number", None)
    exception = context.get("exception")
    error = f"{exception.__class__.__name__}: {exception}" if exception else "see the task log"
    lines = [
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Task: {task_id}" + (f" (try {try_number})" if try_number else ""),
        f"Error: {_shorten(error)}",
    ]
    window = _window(context)
    if window:
        lines.append(f"Window: [{window[0]}, {window[1]}) UTC")
    return {
        "title": f"[Sparkify] {dag_id}.{task_id} failed",
        "text": "\n".join(lines),
        "url": _task_url(ti, dag_id, run_id, task_id),
    }


def describe_missed_deadline(context: Mapping[str, Any], description: str = "") -> dict[str, str]:
    """A run that missed its deadline (a Deadline Alert's context), with a link to the run."""
    dag_run = _as_mapping(context.get("dag_run"))
    deadline = _as_mapping(context.get("deadline"))
    dag_id = dag_run.get("dag_id", "?")
    run_id = dag_run.get("dag_run_id") or dag_run.get("run_id") or "?"
    lines = [
        f"DAG: {dag_id}",
        f"Run: {run_id} (state {dag_run.get('state', '?')})",
        f"Queued at: {dag_run.get('queued_at')}",
        f"Deadline: {deadline.get('deadline_time')}",
    ]
    if description:
        lines.append(description)
    base_url = _base_url()
    return {
        "run_type": str(dag_run.get("run_type") or ""),
        "title": f"[Sparkify] {dag_id} run {run_id} missed its deadline",
        "text": "\n".join(lines),
        "url": f"{base_url}/dags/{dag_id}/runs/{quote(str(run_id), safe='')}" if base_url and run_id != "?" else "",
    }


def _window(context: Mapping[str, Any]) -> tuple[str, str] | None:
    """The window the run processes: its start/end params, else its data interval."""
    from sparkify.window import run_window

    params = context.get("params") or {}
    try:
        window = run_window(context)
        return window.start.isoformat(sep=" "), window.end.isoformat(sep=" ")
    except Exception:  # a bad or missing window may be the very failure reported: show what was given
        if params.get("start") or params.get("end"):
            return str(params.get("start")), str(params.get("end"))
        return None


def _as_mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return {name: getattr(value, name) for name in ("dag_id", "run_id", "state", "queued_at") if hasattr(value, name)}


def _task_url(ti: Any, dag_id: str, run_id: str, task_id: str) -> str:
    try:
        url = ti.log_url
        if url:
            return url
    except Exception:  # no task instance, or no configuration: build the link ourselves
        pass
    base_url = _base_url()
    return f"{base_url}/dags/{dag_id}/runs/{quote(str(run_id), safe='')}/tasks/{task_id}" if base_url else ""


def _base_url() -> str:
    try:
        from airflow.sdk import conf

        return (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    except Exception:
        return ""


def _shorten(text: str, limit: int = 1500) -> str:
    text = str(text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
