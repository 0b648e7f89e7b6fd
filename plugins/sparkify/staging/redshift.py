"""The Redshift engine: one ``COPY`` from S3 with a manifest of the new objects, the ledger
entries from Redshift's own load figures, all in one transaction."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk.exceptions import AirflowFailException

from sparkify.staging.changes import log_report
from sparkify.staging.base import ObjectLoad, SchemaDrift, StageResult, utcnow
from sparkify.staging.ledger import Ledger
from sparkify.warehouse import first_code_line, split_statements

if TYPE_CHECKING:
    from sparkify.key_presence import KeyMap
    from sparkify.records import Column
    from sparkify.staging.base import SourceObject, StageJob


class RedshiftCopyEngine:
    """Stages all objects with one COPY; a failure (too many rejects, drift) stages none."""

    def __init__(self, job: StageJob, upsert_keys: Sequence[str], region: str | None, manifest_prefix: str):
        self.job = job
        self.table = job.table
        self.upsert_keys = list(upsert_keys)
        self.region = region
        self.manifest_prefix = manifest_prefix
        self.ledger = Ledger(job)

    def stage(self, objects: list[SourceObject], run_id: str) -> StageResult:
        from sparkify.key_presence import KeyMap
        from sparkify.records import FormatError, check_jsonpaths

        job, log = self.job, self.job.log
        if not self.upsert_keys:
            raise AirflowFailException(f"{self.table}: upsert_keys are required to replace changed objects on Redshift")
        columns = job.columns()
        jsonpaths = job.jsonpaths()
        paths = None
        if jsonpaths is not None:
            try:
                paths = check_jsonpaths(jsonpaths, columns)
            except FormatError as err:
                raise AirflowFailException(f"{self.table}: {job.json_format}: {err}") from None
        key_map = KeyMap.for_format([column.name for column in columns], paths,
                                    job.json_format.strip().lower() == "auto ignorecase")
        manifest_key = f"{self.manifest_prefix}/{self.table}/{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)}.manifest"
        manifest = {"entries": [{"url": job.url(obj.key), "mandatory": True} for obj in objects]}
        job.s3.load_string(json.dumps(manifest), manifest_key, job.s3_bucket, replace=True)
        sql = job.render(
            "stage/copy_from_s3.sql", columns=[column.name for column in columns], upsert_keys=self.upsert_keys,
            manifest_url=job.url(manifest_key), credentials=self._credentials_clause(),
            region=self.region or job.s3.conn_region_name, json_format=job.json_format.replace("'", "''"),
            max_errors=job.max_errors, stale_sql=job.stale_sql,
        )
        params = {"table": self.table, "run_id": run_id, "queued_at": utcnow()}
        started = time.monotonic()
        report: list[tuple] = []
        with job.warehouse.transaction() as cursor:
            for statement in split_statements(sql):
                try:
                    cursor.execute(statement, params)
                except Exception as err:
                    if first_code_line(statement).upper().startswith("COPY "):
                        self._fail_with_load_errors(cursor, err)
                    raise
                if first_code_line(statement).upper().startswith("COPY "):
                    self._check_copied_columns(cursor, columns, objects, key_map)
                if first_code_line(statement).upper().startswith("SELECT"):
                    report = cursor.fetchall()  # what the change touched (stale_sql)
            loads = self._copy_counts(cursor, objects)
            for obj, load in loads.items():  # each object's DELETE and INSERT together
                self.ledger.record_versions(cursor, [self.ledger.version_row(obj, load, **params, loaded_at=utcnow())])
        log.info("%s: COPY of %d objects from manifest s3://%s/%s complete",
                 self.table, len(objects), job.s3_bucket, manifest_key)
        if job.stale_sql:
            log_report(log, self.table, job.stale_sql, report)
        for obj, load in list(loads.items())[:20]:
            log.info("%s: s3://%s/%s (%s bytes): %s records, %s staged, %d rejected", self.table, job.s3_bucket,
                     obj.key, f"{obj.size:,}", f"{load.records_read:,}", f"{load.rows_staged:,}", load.rows_rejected)
        return StageResult(
            records_read=sum(load.records_read for load in loads.values()),
            rows_staged=sum(load.rows_staged for load in loads.values()),
            rows_rejected=sum(load.rows_rejected for load in loads.values()),
            seconds=round(time.monotonic() - started, 3),
        )

    def _check_copied_columns(self, cursor: Any, columns: list[Column], objects: list[SourceObject],
                              key_map: KeyMap) -> None:
        """Redshift's COPY can't count JSON keys: fail when a column is NULL in every row it loaded
        (over more than ``drift_min_records`` rows), the trace a vanished key leaves. The check
        covers the COPY's objects together, as Redshift records no row's source object."""
        from sparkify.key_presence import parse_allowed

        rows = _fetch(cursor, self.job.render("stage/copy_column_counts.sql", columns=[c.name for c in columns]))
        if not rows:
            return
        loaded, *non_null = rows[0]
        allowed = parse_allowed(self.job.allow_absent_keys)
        empty = [column.name for column, count in zip(columns, non_null)
                 if not count and not key_map.allows(column.name, allowed)]
        if empty and loaded > self.job.min_records():
            files = ", ".join(self.job.url(obj.key) for obj in objects[:10])
            more = f" and {len(objects) - 10} more" if len(objects) > 10 else ""
            raise SchemaDrift(
                f"{self.table}: schema drift: column {', '.join(empty)} is NULL in all {loaded:,} rows the COPY of "
                f"{files}{more} loaded (COPY loads NULL for a missing JSON key). Nothing was staged. If the key "
                "may legitimately be absent, list it in the allow_absent_keys param", objects[0].key)

    def _copy_counts(self, cursor: Any, objects: list[SourceObject]) -> dict[SourceObject, ObjectLoad]:
        """Per object, Redshift's figures for the COPY just run: lines it scanned, lines it
        rejected; the rows staged follow, and together they must add up to the rows it loaded."""
        copied_sql, per_file_sql = split_statements(self.job.render("stage/copy_load_counts.sql"))
        [(copied,)] = _fetch(cursor, copied_sql)
        lines = {url: int(count) for url, count in _fetch(cursor, per_file_sql)}
        rejected = Counter(url for url, *_ in _fetch(cursor, self.job.render("stage/copy_load_errors.sql")))
        loads = {}
        for obj in objects:
            url = self.job.url(obj.key)
            loads[obj] = ObjectLoad(lines.get(url, 0), lines.get(url, 0) - rejected[url], rejected[url])
        staged = sum(load.rows_staged for load in loads.values())
        if staged != copied:
            raise AirflowFailException(
                f"{self.table}: Redshift scanned {sum(lines.values()):,} lines and rejected {sum(rejected.values()):,}, "
                f"but loaded {copied:,} rows, not {staged:,}; nothing was staged"
            )
        return loads

    def _fail_with_load_errors(self, cursor: Any, error: Exception) -> None:
        """After a COPY that failed, name the lines Redshift rejected, if that is why it failed."""
        # The failed COPY aborted the transaction; the session (and pg_last_copy_id) lives on.
        cursor.connection.rollback()
        errors = _fetch(cursor, self.job.render("stage/copy_load_errors.sql"))
        if not errors:
            return  # not a load error (access, manifest, ...): let it propagate and retry
        for url, line, field, reason in errors[:5]:
            self.job.log.warning("%s: rejected %s line %s: %s%s", self.table, url, line, f"{field}: " if field else "", reason)
        url, line, field, reason = errors[0]
        raise AirflowFailException(
            f"{self.table}: {url} line {line}: {f'{field}: ' if field else ''}{reason} (the COPY stopped past "
            f"max_errors={self.job.max_errors}, {len(errors)} rejects in Redshift's load errors; nothing was staged)"
        ) from error

    def _credentials_clause(self) -> str:
        """The COPY's authorization: the AWS connection's role, else its keys (masked in logs).

        Not the provider's ``build_credentials_block``: that writes the older ``CREDENTIALS
        'aws_access_key_id=...'`` form, and this COPY's text (pinned by the Redshift tests) uses
        ``ACCESS_KEY_ID ... SECRET_ACCESS_KEY ... SESSION_TOKEN``."""
        from airflow.sdk.log import mask_secret

        s3 = self.job.s3
        role_arn = s3.conn_config.role_arn if s3.conn_config else None
        if role_arn:
            return f"IAM_ROLE '{role_arn}'"
        credentials = s3.get_credentials()
        for secret in (credentials.secret_key, credentials.token):
            if secret:
                mask_secret(secret)
        clause = f"ACCESS_KEY_ID '{credentials.access_key}' SECRET_ACCESS_KEY '{credentials.secret_key}'"
        return clause + (f" SESSION_TOKEN '{credentials.token}'" if credentials.token else "")


def _fetch(cursor: Any, statement: str) -> list[tuple]:
    cursor.execute(statement)
    return cursor.fetchall()
