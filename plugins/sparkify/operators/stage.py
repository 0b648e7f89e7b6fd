"""Stage JSON from S3 into a warehouse staging table, once per object version."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from sparkify.buckets import require_bucket
from sparkify.staging.changes import missing_objects
from sparkify.staging.base import SchemaDrift, StageJob, TooManyRejects, list_objects
from sparkify.staging.ledger import Ledger
from sparkify.warehouse import WarehouseOperatorMixin, validate_identifier
from sparkify.window import run_window

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Context

    from sparkify.staging.base import StagingEngine

# The failures of one object, where callers (and tests) have long imported them from.
__all__ = ["SchemaDrift", "StageToRedshiftOperator", "TooManyRejects"]


class StageToRedshiftOperator(WarehouseOperatorMixin, BaseOperator):
    """
    Stage JSON objects from S3 into a warehouse staging table.

    Modelled on the amazon provider's ``S3ToRedshiftOperator``. The warehouse connection's
    dialect picks the engine (``sparkify.staging``): against Redshift it issues ``COPY`` with a
    manifest of the new objects; against PostgreSQL, the local target, it streams each object
    through ``S3Hook`` and writes with ``COPY FROM STDIN``, applying the same JSON rules (see
    ``sparkify.records``).

    Each object version is staged once: a ledger keyed by (table, key) remembers the ETag.
    Unchanged objects are skipped and a changed object replaces the rows it staged before.

    :param table: staging table to load.
    :param s3_bucket: bucket holding the data.
    :param s3_key: an object key, or a prefix ending in ``/``. With ``per_day`` it is a
        ``strftime`` pattern, formatted with each UTC day of the run's window, e.g.
        ``log_data/%Y/%m/%Y-%m-%d-events.json`` (a literal ``%`` is written ``%%``).
    :param per_day: ``s3_key`` names one object per UTC day of the run's window.
    :param json_format: ``'auto'``, ``'auto ignorecase'`` or ``s3://bucket/jsonpaths.json``.
    :param region: the bucket's AWS region (Redshift's COPY needs it).
    :param max_errors: rejected records allowed per COPY (per object on PostgreSQL) before
        the load fails, like Redshift's MAXERROR.
    :param upsert_keys: on Redshift, staged rows whose keys match a new row are replaced.
    :param stale_sql: a template (``stage/stale_hours.sql``, ``stage/stale_song_matches.sql``) that
        queues what a change to the staged rows touches in the loaded star schema, for the loads
        to re-derive; None queues nothing.
    :param remove_deleted_objects: remove the staged rows of objects no longer listed (deleted or
        expired in S3). Off by default: raw data expiring must not erase warehouse history, so a
        missing object is only recorded in ``stage_missing_objects`` and logged.
    :param create_tables: first create the warehouse's missing tables, unless the DDL recorded
        in ``schema_version`` is current (sparkify.schema): an empty warehouse's first run works
        and later runs pay one query.
    :param allow_absent_keys: JSON keys (or column names), a list or comma-separated, that may be
        absent from every record of an object. Any other expected key absent from every record of
        an object of more than ``drift_min_records`` records fails that object (schema drift,
        see ``sparkify.key_presence``); the other objects still stage.
    :param drift_min_records: objects with at most this many records only warn of an absent key.
    :param manifest_prefix: on Redshift, the key prefix the COPY's manifest is written under.
    :param aws_conn_id: the AWS connection to read S3 with.
    :param redshift_conn_id: the warehouse connection (Redshift or PostgreSQL).
    """

    template_fields: Sequence[str] = (
        "s3_bucket", "s3_key", "json_format", "region", "max_errors",
        "remove_deleted_objects", "allow_absent_keys",
    )
    ui_color = "#99e699"

    def __init__(
        self,
        *,
        table: str,
        s3_bucket: str,
        s3_key: str,
        json_format: str = "auto",
        region: str | None = None,
        per_day: bool = False,
        max_errors: int | str = 0,
        upsert_keys: Sequence[str] = (),
        stale_sql: str | None = None,
        remove_deleted_objects: bool | str = False,
        create_tables: bool = True,
        allow_absent_keys: str | Sequence[str] = (),
        drift_min_records: int | None = None,
        manifest_prefix: str = "manifests",
        aws_conn_id: str = "aws_default",
        redshift_conn_id: str = "redshift_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.json_format = json_format
        self.region = region
        self.per_day = per_day
        self.max_errors = max_errors
        self.upsert_keys = list(upsert_keys)
        self.stale_sql = stale_sql
        self.remove_deleted_objects = remove_deleted_objects
        self.create_tables = create_tables
        self.allow_absent_keys = allow_absent_keys
        self.drift_min_records = drift_min_records
        self.manifest_prefix = manifest_prefix
        self.aws_conn_id = aws_conn_id
        self.redshift_conn_id = redshift_conn_id

    @property
    def conn_id(self) -> str:
        """The warehouse connection, by the name the other operators give it."""
        return self.redshift_conn_id

    @cached_property
    def s3(self) -> S3Hook:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id)

    def execute(self, context: Context) -> dict[str, int]:
        validate_identifier(self.table, "table")
        for key in self.upsert_keys:
            validate_identifier(key, "upsert key")
        try:
            self.max_errors = int(self.max_errors)
        except ValueError:
            raise AirflowFailException(f"max_errors={self.max_errors!r} is not an integer") from None
        require_bucket(self.s3, self.s3_bucket)
        with self.warehouse.session():
            return self._stage(context)

    def _stage(self, context: Context) -> dict[str, int]:
        if self.create_tables:
            self._ensure_tables(context["run_id"])

        job = self._job()
        ledger = Ledger(job)
        keys = self.keys_listed = self._keys(context)  # kept for get_openlineage_facets_on_complete
        urls = [f"s3://{self.s3_bucket}/{key}" for key in keys]
        shown = ", ".join(urls[:3]) + (f", ... {urls[-1]} ({len(urls)} keys)" if len(urls) > 3 else "")
        self.log.info("::group::Listing %s", shown)
        listed = list(list_objects(self.s3, self.s3_bucket, keys, self.log))
        staged = ledger.staged_versions()
        new = [obj for obj in listed if staged.get(obj.key) != obj.etag]
        self.keys_read = [obj.key for obj in new]  # for get_openlineage_facets_on_complete
        self.log.info("::endgroup::")
        ledger.forget_found_again(obj.key for obj in listed)
        missing = missing_objects(staged, (obj.key for obj in listed), keys)
        if missing:
            ledger.record_missing(missing, context["run_id"], self._remove_missing())
        self.log.info(
            "%s: %d objects listed, %d new or changed, %d unchanged and skipped (%s bytes new)",
            self.table, len(listed), len(new), len(listed) - len(new), f"{sum(o.size for o in new):,}",
        )
        if not new:
            self.log.info("%s: nothing new to stage; 0 rows staged", self.table)
            return {"objects_listed": len(listed), "objects_new": 0, "objects_missing": len(missing),
                    "rows_staged": 0, "rows_rejected": 0}

        self.log.info("::group::Staging %d objects into %s", len(new), self.table)
        try:
            result = self._engine(job).stage(new, context["run_id"])
        finally:
            self.log.info("::endgroup::")
        if result.failures:
            # The other objects are staged and committed; the failed ones stay as they were.
            raise AirflowFailException(
                f"{self.table}: {len(result.failures)} of {len(new)} objects not staged ({result.rows_staged:,} rows "
                "of the other objects were staged):\n" + "\n".join(map(str, result.failures)))
        self.log.info(
            "%s: staged %s rows from %d objects (%s bytes), %d rejected, %s records read in %.1f s (%s rows/s)",
            self.table, f"{result.rows_staged:,}", len(new), f"{sum(o.size for o in new):,}",
            result.rows_rejected, f"{result.records_read:,}", result.seconds,
            f"{result.rows_staged / max(result.seconds, 1e-9):,.0f}",
        )
        return {"objects_listed": len(listed), "objects_new": len(new), "objects_missing": len(missing),
                **result.totals()}

    def _job(self) -> StageJob:
        return StageJob(
            table=self.table, s3_bucket=self.s3_bucket, json_format=self.json_format, max_errors=int(self.max_errors),
            stale_sql=self.stale_sql, allow_absent_keys=self.allow_absent_keys,
            drift_min_records=self.drift_min_records, warehouse=self.warehouse, s3=self.s3, render=self._sql,
            log=self.log,
        )

    def _engine(self, job: StageJob) -> StagingEngine:
        """The engine for the warehouse's dialect (``sparkify.staging``)."""
        if self.warehouse.dialect == "redshift":
            from sparkify.staging.redshift import RedshiftCopyEngine

            return RedshiftCopyEngine(job, self.upsert_keys, self.region, self.manifest_prefix)
        from sparkify.staging.postgres import PostgresStreamEngine

        return PostgresStreamEngine(job)

    def _ensure_tables(self, run_id: str) -> None:
        from sparkify.schema import ensure_tables

        started = time.monotonic()
        env = self.sql_templates
        if ensure_tables(self.warehouse, self._sql, lambda template: env.loader.get_source(env, template)[0], run_id):
            self.log.info("schema: created the missing tables (include/sql/create) in %.2f s; "
                          "later runs skip the DDL while it is unchanged", time.monotonic() - started)
        else:
            self.log.info("schema: current (the DDL recorded in schema_version is this code's)")

    # -- which objects ------------------------------------------------------------------

    def _keys(self, context: Context) -> list[str]:
        """The keys (or prefix) to list: per day, the key pattern for each day of the run's window."""
        if self.per_day:
            return [day.strftime(self.s3_key) for day in run_window(context).days]
        return [self.s3_key]

    def _remove_missing(self) -> bool:
        """Whether to remove the rows of staged objects no longer listed: PostgreSQL only, where
        staging knows each row's object (it re-derives what they gave)."""
        remove = str(self.remove_deleted_objects).strip().lower() in ("true", "1", "yes")
        if remove and self.warehouse.dialect == "redshift":
            self.log.warning("%s: remove_deleted_objects has no effect on Redshift, where COPY records no row's "
                             "source object; the rows stay staged", self.table)
            remove = False
        return remove

    # -- lineage and templates ----------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the S3 objects this run read in, the staging table out."""
        from sparkify.lineage import staging_lineage

        return staging_lineage(self.s3_bucket, getattr(self, "keys_read", []), getattr(self, "keys_listed", [self.s3_key]),
                               self.warehouse, self.table)

    def _sql(self, template: str, **extra: Any) -> str:
        return self.render_sql(template, serverless=self.warehouse.serverless, table=self.table, **extra)
