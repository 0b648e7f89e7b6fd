"""The benchmark's no-op DAGs (section 6) have exactly the graph they are generated from."""

from __future__ import annotations

from pathlib import Path

from bench.e2e import MINIMAL_GRAPH, noop_dag_source


def test_a_generated_noop_dag_has_the_given_graph_and_real_tasks(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    graph = {"stage_a": ["load"], "stage_b": ["load", "group.check"], "load": ["group.check"], "group.check": []}
    (tmp_path / "noop.py").write_text(noop_dag_source("noop_same", graph, "test"))
    (tmp_path / "minimal.py").write_text(noop_dag_source("noop_minimal", MINIMAL_GRAPH, "test"))
    bag = DagBag(str(tmp_path))
    assert not bag.import_errors
    for dag_id, expected in (("noop_same", graph), ("noop_minimal", MINIMAL_GRAPH)):
        dag = bag.dags[dag_id]
        assert {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks} == \
            {task: sorted(children) for task, children in expected.items()}
        # EmptyOperator is never started as a process; the baseline must pay for one per task.
        assert all(type(task).__name__ == "NoOp" for task in dag.tasks)
        assert dag.timetable.__class__.__name__ == "CronDataIntervalTimetable"
