"""
### Sparkify audit: every loaded hour still holds the songplays its staged events give

`sparkify_etl` refreshes the hours a staging change touches, and its checks cover the hours
each run loads. This daily audit checks the whole history the same way: for every hour in
`loaded_hours`, the `songplays` rows must be exactly those the staged events give now (same
`songplay_id`s, same values, current song matches). A failure lists the hours that drifted.

Cost follows the size of the warehouse, once a day, apart from the hourly runs. Trigger it by
hand (▶) after a repair or a manual change to the star schema: it only reads.
"""

from __future__ import annotations

from airflow.sdk import DAG

from sparkify.catalog import WAREHOUSE_CONN_ID
from sparkify.dag_defaults import DEFAULT_ARGS, SQL_DIR, START_DATE
from sparkify.operators import QualityChecksOperator
from sparkify.quality import songplays_drift

with DAG(
    dag_id="sparkify_audit",
    description="Daily: every loaded hour's songplays equal what staging gives now",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    template_searchpath=[str(SQL_DIR)],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["sparkify", "audit"],
) as dag:
    QualityChecksOperator(
        task_id="songplays_current",
        conn_id=WAREHOUSE_CONN_ID,
        checks={"loaded_hours": {"rows": {"songplays_current": songplays_drift("all")}}},
        windowed=False,
        doc_md="Every loaded hour's songplays equal those derived from staging now; the failure "
               "report lists the hours that drifted.",
    )
