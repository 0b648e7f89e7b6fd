"""The params of a ``sparkify_etl`` run: the window of a manual run and the knobs of staging,
loading and the checks. Each is validated by Airflow on trigger (the form shows the descriptions)."""

from __future__ import annotations

from airflow.sdk import Param

HOUR_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:00(:00)?(Z|[+-]00:?00)?$"


def etl_params() -> dict[str, Param]:
    return {
        # Both or neither, start before end: checked by sparkify.window.run_window in the first task
        # (a failure without retries), as a Param validates only its own value.
        "start": Param(None, type=["null", "string"], pattern=HOUR_PATTERN,
                       description="Manual runs: first hour of the window (UTC, e.g. 2018-11-01T00:00:00Z). "
                                   "Give both start and end, or neither to process the scheduled hour."),
        "end": Param(None, type=["null", "string"], pattern=HOUR_PATTERN,
                     description="Manual runs: end of the window, exclusive (UTC, whole hour, after start). "
                                 "Give both start and end, or neither."),
        "full_refresh": Param(False, type="boolean",
                              description="Rebuild the users, songs and artists dimensions instead of merging."),
        "max_errors": Param(10, type="integer", minimum=0,
                            description="Rejected records allowed per object before staging fails (Redshift MAXERROR)."),
        "remove_deleted_objects": Param(False, type="boolean",
                                        description="Remove the staged rows of S3 objects that were staged but are no "
                                                    "longer listed, and re-derive the hours they touched. Off: they are "
                                                    "only recorded in stage_missing_objects (raw data expiring keeps "
                                                    "its history)."),
        "allow_absent_keys": Param([], type="array", items={"type": "string"},
                                   description="JSON keys (or column names) that may be absent from every record "
                                               "of an object. Any other expected key absent from every record of "
                                               "an object of more than 10 records fails that object's staging "
                                               "(schema drift)."),
        "anomaly_baseline_days": Param(7, type="number", exclusiveMinimum=0,
                                       description="Anomaly checks compare the window with this many days before it."),
        "anomaly_drop_factor": Param(2.0, type="number", minimum=1,
                                     description="An anomaly check fails when its metric is below the baseline "
                                                 "divided by this."),
        "anomaly_min_expected": Param(20, type="number", minimum=0,
                                      description="An anomaly check judges a metric only when the baseline predicts "
                                                  "at least this many counts in the window."),
    }
