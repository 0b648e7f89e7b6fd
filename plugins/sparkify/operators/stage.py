"""Stage JSON from S3 into a warehouse staging table, once per object version."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk import BaseOperator

from sparkify.buckets import require_bucket
from sparkify.operators.staged_changes import log_report, missing_objects, run_phase
from sparkify.warehouse import Warehouse, first_code_line, split_statements
from sparkify.window import run_window

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from psycopg import Copy

    from sparkify.key_presence import KeyCounts, KeyMap
    from sparkify.records import Column, RecordError, RecordParser
    from airflow.sdk import Context

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
RAW_TEXT_LIMIT = 2000
READ_CHUNK_BYTES = 1 << 20
PROGRESS_EVERY_BYTES = 64 << 20
# Column types psycopg can send in binary COPY (as PostgreSQL's information_schema names them).
BINARY_COPY_TYPES = {
    "character varying", "text", "smallint", "integer", "bigint", "real", "double precision",
    "timestamp without time zone", "boolean",
}
SMALL_OBJECT_BYTES = 1 << 20
SMALL_OBJECTS_PER_BATCH = 500
FETCH_THREADS = 16
# stage_key_presence keeps an object's most frequent unknown keys, each cut to the column's length.
UNKNOWN_KEYS_KEPT = 50
JSON_KEY_LENGTH = 256


def validate_identifier(name: str, what: str) -> str:
    if not IDENTIFIER.match(name):
        raise AirflowFailException(f"{what} {name!r} is not a plain lower-case SQL identifier")
    return name


@dataclass(frozen=True)
class SourceObject:
    key: str
    etag: str
    size: int


@dataclass
class ObjectLoad:
    # records_read counts the object's JSON records as they are read, apart from what became of
    # them: a record over several lines counts once, whitespace between records not at all (as
    # Redshift's JSON COPY reads them). Every record must be staged or rejected, so the ledger's
    # lines_read (which holds records_read) = rows_staged + rows_rejected fails if one goes missing.
    records_read: int = 0
    rows_staged: int = 0
    rows_rejected: int = 0
    keys: KeyCounts | None = None  # which JSON keys its records carried (PostgreSQL path)


class TooManyRejects(AirflowFailException):
    """An object has more rejects than max_errors; ``key`` names it. Its batch rolls back and
    stages again without it; the task fails once every other object is staged."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


class SchemaDrift(AirflowFailException):
    """An expected JSON key is absent from every record of an object; ``key`` names the object."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


class StageToRedshiftOperator(BaseOperator):
    """
    Stage JSON objects from S3 into a warehouse staging table.

    Modelled on the amazon provider's ``S3ToRedshiftOperator``. Against a Redshift
    connection it issues ``COPY`` with a manifest of the new objects; against a PostgreSQL
    connection it streams each object through ``S3Hook`` and writes with ``COPY FROM STDIN``,
    applying the same JSON rules (see ``sparkify.records``).

    Each object version is staged once: a ledger keyed by (table, key) remembers the ETag.
    Unchanged objects are skipped and a changed object replaces the rows it staged before.

    :param table: staging table to load.
    :param s3_bucket: bucket holding the data.
    :param s3_key: an object key, or a prefix ending in ``/``. With ``per_day`` it is a
        pattern formatted once per UTC day of the run's window (a ``datetime.date`` format),
        e.g. ``log_data/{day:%Y}/{day:%m}/{day:%Y-%m-%d}-events.json``.
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
    """

    template_fields: Sequence[str] = (
        "s3_bucket", "s3_key", "json_format", "region", "max_errors",
        "remove_deleted_objects", "allow_absent_keys",
    )
    template_fields_renderers = {"s3_key": "py"}
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

    @cached_property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.redshift_conn_id)

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
        if self.create_tables:
            self._ensure_tables(context["run_id"])

        keys = self.keys_listed = self._keys(context)  # kept for get_openlineage_facets_on_complete
        urls = [f"s3://{self.s3_bucket}/{key}" for key in keys]
        shown = ", ".join(urls[:3]) + (f", ... {urls[-1]} ({len(urls)} keys)" if len(urls) > 3 else "")
        self.log.info("::group::Listing %s", shown)
        listed = list(self._list_objects(keys))
        staged = self._staged_versions()
        new = [obj for obj in listed if staged.get(obj.key) != obj.etag]
        self.keys_read = [obj.key for obj in new]  # for get_openlineage_facets_on_complete
        self.log.info("::endgroup::")
        self._forget_found_again({obj.key for obj in listed})
        missing = missing_objects(staged, (obj.key for obj in listed), keys)
        if missing:
            self._record_missing(missing, context["run_id"])
        self.log.info(
            "%s: %d objects listed, %d new or changed, %d unchanged and skipped (%s bytes new)",
            self.table, len(listed), len(new), len(listed) - len(new), f"{sum(o.size for o in new):,}",
        )
        if not new:
            self.log.info("%s: nothing new to stage; 0 rows staged", self.table)
            return {"objects_listed": len(listed), "objects_new": 0, "objects_missing": len(missing),
                    "rows_staged": 0, "rows_rejected": 0}

        run_id = context["run_id"]
        self.log.info("::group::Staging %d objects into %s", len(new), self.table)
        try:
            if self.warehouse.dialect == "redshift":
                totals = self._copy_from_s3(new, run_id)
            else:
                totals = self._stream_into_postgres(new, run_id)
        finally:
            self.log.info("::endgroup::")
        if totals:
            self.log.info(
                "%s: staged %s rows from %d objects (%s bytes), %d rejected, %s records read in %.1f s (%s rows/s)",
                self.table, f"{totals['rows_staged']:,}", len(new), f"{sum(o.size for o in new):,}",
                totals["rows_rejected"], f"{totals['records_read']:,}", totals["seconds"],
                f"{totals['rows_staged'] / max(totals['seconds'], 1e-9):,.0f}",
            )
        return {"objects_listed": len(listed), "objects_new": len(new), "objects_missing": len(missing), **totals}

    def _ensure_tables(self, run_id: str) -> None:
        from sparkify.schema import ensure_tables

        started = time.monotonic()
        env = self.get_template_env()
        if ensure_tables(self.warehouse, self._sql, lambda template: env.loader.get_source(env, template)[0], run_id):
            self.log.info("schema: created the missing tables (include/sql/create) in %.2f s; "
                          "later runs skip the DDL while it is unchanged", time.monotonic() - started)
        else:
            self.log.info("schema: current (the DDL recorded in schema_version is this code's)")

    # -- which objects ------------------------------------------------------------------

    def _keys(self, context: Context) -> list[str]:
        """The keys (or prefix) to list: per day, the key pattern for each day of the run's window."""
        if self.per_day:
            return [self.s3_key.format(day=day) for day in run_window(context).days]
        return [self.s3_key]

    def _list_objects(self, keys: list[str]) -> Iterator[SourceObject]:
        for key in keys:
            if key.endswith("/"):
                for meta in self.s3.iter_file_metadata(prefix=key, bucket_name=self.s3_bucket):
                    if not meta["Key"].endswith("/"):
                        yield SourceObject(meta["Key"], meta["ETag"].strip('"'), meta["Size"])
                continue
            head = self.s3.head_object(key, self.s3_bucket)
            if head is None:
                self.log.info("%s: no object s3://%s/%s; nothing to stage from it", self.table, self.s3_bucket, key)
                continue
            yield SourceObject(key, head["ETag"].strip('"'), head["ContentLength"])

    def _staged_versions(self) -> dict[str, str]:
        rows = self.warehouse.get_records(self._sql("stage/stage_load_ledger_versions.sql"), {"table": self.table})
        return dict(rows)

    # -- PostgreSQL: stream, parse, COPY FROM STDIN ----------------------------------------

    def _stream_into_postgres(self, objects: list[SourceObject], run_id: str) -> dict[str, int]:
        from sparkify.records import FormatError, RecordParser

        try:
            parser = RecordParser(self._columns(), self.json_format, self._jsonpaths())
        except FormatError as err:
            raise AirflowFailException(f"{self.table}: {self.json_format}: {err}") from None
        self._key_map = parser.key_map()
        self._copy_types = self._binary_copy_types(parser.columns)
        copy_sql = self._sql("stage/copy_from_stdin.sql", columns=[column.name for column in parser.columns],
                             binary=self._copy_types is not None)
        started = time.monotonic()
        totals = ObjectLoad()
        # Large objects stream one by one; small ones (song files) are fetched concurrently
        # and staged many per transaction, since a round trip per file would dominate.
        small = [obj for obj in objects if obj.size <= SMALL_OBJECT_BYTES]
        batches = [[obj] for obj in objects if obj.size > SMALL_OBJECT_BYTES]
        batches += [small[i:i + SMALL_OBJECTS_PER_BATCH] for i in range(0, len(small), SMALL_OBJECTS_PER_BATCH)]
        verbose = len(objects) <= 20
        failed: list[AirflowFailException] = []
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            for number, batch in enumerate(batches, start=1):
                loads = self._stage_batch(batch, parser, copy_sql, run_id, pool, failed)
                for obj, load in loads.items():
                    totals.records_read += load.records_read
                    totals.rows_staged += load.rows_staged
                    totals.rows_rejected += load.rows_rejected
                    if verbose:
                        self.log.info("%s: s3://%s/%s (%s bytes): %s records, %s staged, %d rejected",
                                      self.table, self.s3_bucket, obj.key, f"{obj.size:,}", f"{load.records_read:,}",
                                      f"{load.rows_staged:,}", load.rows_rejected)
                if not verbose:
                    self.log.info("%s: batch %d/%d staged, %s rows so far", self.table, number, len(batches),
                                  f"{totals.rows_staged:,}")
        if failed:
            # The other objects are staged and committed; the failed ones stay as they were.
            raise AirflowFailException(
                f"{self.table}: {len(failed)} of {len(objects)} objects not staged ({totals.rows_staged:,} rows "
                "of the other objects were staged):\n" + "\n".join(map(str, failed)))
        return {
            "records_read": totals.records_read, "rows_staged": totals.rows_staged,
            "rows_rejected": totals.rows_rejected, "seconds": round(time.monotonic() - started, 3),
        }

    def _stage_batch(self, batch: list[SourceObject], parser: RecordParser, copy_sql: str, run_id: str,
                     pool: ThreadPoolExecutor, failed: list[AirflowFailException]) -> dict[SourceObject, ObjectLoad]:
        """Replace the staged rows of these objects and record their versions, in one transaction.
        An object that can't be staged (too many rejects, schema drift) is left out, its error
        appended to ``failed``, and the rest of the batch staged again without it."""
        loads: dict[SourceObject, ObjectLoad] = {}
        rejects: list[dict[str, Any]] = []
        while batch:
            params = {"table": self.table, "s3_keys": [obj.key for obj in batch]}
            loads, rejects = {}, []
            try:
                self._replace_objects(batch, parser, copy_sql, run_id, pool, params, loads, rejects)
            except (TooManyRejects, SchemaDrift) as failure:
                # The batch rolled back: the failing object keeps what it staged before (rows and
                # ledger entry, so a later run tries it again), and its rejects are kept to look at.
                self.log.error("%s", failure)
                failed.append(failure)
                if isinstance(failure, TooManyRejects):
                    culprit = next(obj for obj in batch if obj.key == failure.key)
                    self._keep_rejects(culprit, [reject for reject in rejects if reject["s3_key"] == failure.key])
                batch = [obj for obj in batch if obj.key != failure.key]
                continue
            break
        for reject in rejects[:5]:
            self.log.warning("%s: rejected %s line %s: %s", self.table, reject["s3_key"], reject["source_line"], reject["reason"])
        if len(rejects) > 5:
            self.log.warning("%s: %d more rejects in stage_rejects", self.table, len(rejects) - 5)
        return loads

    def _replace_objects(self, batch: list[SourceObject], parser: RecordParser, copy_sql: str, run_id: str,
                         pool: ThreadPoolExecutor, params: dict[str, Any], loads: dict[SourceObject, ObjectLoad],
                         rejects: list[dict[str, Any]]) -> None:
        with self.warehouse.transaction() as cursor:
            # Under the per-object locks, skip versions another run staged meanwhile.
            cursor.execute(self._sql("stage/lock_objects.sql"), params)
            cursor.execute(self._sql("stage/stage_load_ledger_etags.sql"), params)
            staged_now = dict(cursor.fetchall())
            todo = [obj for obj in batch if staged_now.get(obj.key) != obj.etag]
            if len(todo) < len(batch):
                self.log.info("%s: %d objects were staged meanwhile by another run; skipped", self.table, len(batch) - len(todo))
            if not todo:
                return
            params.update(s3_keys=[obj.key for obj in todo], run_id=run_id, queued_at=_utcnow())
            if self.stale_sql:
                run_phase(cursor, self._sql, self.stale_sql, "before", params)
            for statement in split_statements(self._sql("stage/staging_object_rows.sql")):
                cursor.execute(statement, params)
            if len(todo) == 1:
                sources = [(todo[0], self._line_batches(todo[0]))]
            else:
                sources = zip(todo, pool.map(lambda obj: list(self._line_batches(obj)), todo))
            with cursor.copy(copy_sql) as copy:
                if self._copy_types is not None:
                    copy.set_types(self._copy_types)
                for obj, line_batches in sources:
                    loads[obj] = self._copy_object(copy, obj, line_batches, parser, run_id, rejects)
            if rejects:
                cursor.executemany(self._sql("stage/stage_rejects.sql"), rejects)
            loaded_at = _utcnow()
            for statement in split_statements(self._sql("stage/stage_load_ledger.sql")):
                cursor.executemany(statement, [
                    {"table": self.table, "s3_key": obj.key, "etag": obj.etag, "size_bytes": obj.size,
                     "lines_read": load.records_read, "rows_staged": load.rows_staged,
                     "rows_rejected": load.rows_rejected, "run_id": run_id, "loaded_at": loaded_at}
                    for obj, load in loads.items()
                ])
            cursor.execute(self._sql("stage/stage_key_presence_delete.sql"), params)
            cursor.executemany(self._sql("stage/stage_key_presence.sql"), [
                {"table": self.table, "s3_key": obj.key, "json_key": key, "column_name": column, "records": records,
                 "present": present, "run_id": run_id, "loaded_at": loaded_at}
                for obj, load in loads.items() for key, column, records, present in key_presence_rows(load.keys, self._key_map)
            ])
            if self.stale_sql:
                log_report(self.log, self.table, self.stale_sql, run_phase(cursor, self._sql, self.stale_sql, "after", params))

    def _forget_found_again(self, listed: set[str]) -> None:
        params = {"table": self.table}
        found = sorted(listed.intersection(key for (key,) in self.warehouse.get_records(
            self._sql("stage/stage_missing_objects_found.sql"), params)))
        if found:
            self.log.info("%s: %d objects recorded as missing are listed again: %s", self.table, len(found),
                          ", ".join(found[:5]))
            with self.warehouse.transaction() as cursor:
                cursor.executemany(self._sql("stage/stage_missing_objects_found.sql", found=True),
                                   [{**params, "s3_key": key} for key in found])

    def _record_missing(self, missing: dict[str, str], run_id: str) -> None:
        """Log and record staged objects the listing no longer found; remove their rows if asked
        (PostgreSQL: staging knows each row's object there, so it re-derives what they gave)."""
        remove = str(self.remove_deleted_objects).strip().lower() in ("true", "1", "yes")
        if remove and self.warehouse.dialect == "redshift":
            self.log.warning("%s: remove_deleted_objects has no effect on Redshift, where COPY records no row's "
                             "source object; the rows stay staged", self.table)
            remove = False
        for key in sorted(missing)[:20]:
            self.log.warning("%s: s3://%s/%s was staged (ETag %s) but is no longer listed; %s", self.table,
                             self.s3_bucket, key, missing[key],
                             "removing its rows" if remove else "its rows stay staged (remove_deleted_objects is off)")
        params = {"table": self.table, "s3_keys": sorted(missing), "run_id": run_id, "queued_at": _utcnow()}
        record = split_statements(self._sql("stage/stage_missing_objects.sql"))
        per_key = [{**params, "s3_key": key, "rows_removed": remove, "seen_missing_at": params["queued_at"]}
                   for key in sorted(missing)]
        with self.warehouse.transaction() as cursor:
            if remove:
                cursor.execute(self._sql("stage/lock_objects.sql"), params)
                if self.stale_sql:
                    run_phase(cursor, self._sql, self.stale_sql, "before", params)
                for statement in split_statements(self._sql("stage/staging_object_rows.sql")):
                    cursor.execute(statement, params)
            for statement in record:
                cursor.executemany(statement, per_key)
            if remove:
                cursor.execute(self._sql("stage/stage_load_ledger_delete.sql"), params)
                cursor.execute(self._sql("stage/stage_key_presence_delete.sql"), params)
                if self.stale_sql:
                    log_report(self.log, self.table, self.stale_sql,
                               run_phase(cursor, self._sql, self.stale_sql, "after", params))

    def _keep_rejects(self, obj: SourceObject, rejects: list[dict[str, Any]]) -> None:
        """Record the rejects of an object that failed to stage, replacing those of an earlier
        failed attempt; its staging succeeding later replaces them again (no duplicates)."""
        params = {"table": self.table, "s3_keys": [obj.key]}
        with self.warehouse.transaction() as cursor:
            cursor.execute(self._sql("stage/lock_objects.sql"), params)
            cursor.execute(self._sql("stage/stage_load_ledger_etags.sql"), params)
            if dict(cursor.fetchall()).get(obj.key) == obj.etag:
                return  # another run staged this version meanwhile, with its own rejects
            cursor.execute(self._sql("stage/stage_rejects_delete.sql"), params)
            cursor.executemany(self._sql("stage/stage_rejects.sql"), rejects)

    def _line_batches(self, obj: SourceObject) -> Iterator[list[bytes]]:
        """Stream the exact version listed (If-Match), as the lines of each chunk."""
        from sparkify.json_stream import split_lines

        body = self.s3.get_conn().get_object(Bucket=self.s3_bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')["Body"]
        return split_lines(self._with_progress(obj, body.iter_chunks(READ_CHUNK_BYTES)))

    def _with_progress(self, obj: SourceObject, chunks: Iterable[bytes]) -> Iterator[bytes]:
        read, next_report = 0, PROGRESS_EVERY_BYTES
        for chunk in chunks:
            yield chunk
            read += len(chunk)
            if read >= next_report:
                self.log.info("%s: %s ... %s of %s bytes read", self.table, obj.key, f"{read:,}", f"{obj.size:,}")
                next_report += PROGRESS_EVERY_BYTES

    def _copy_object(self, copy: Copy, obj: SourceObject, line_batches: Iterable[list[bytes]], parser: RecordParser,
                     run_id: str, rejects: list[dict[str, Any]]) -> ObjectLoad:
        """Write one object's records to the COPY and its bad records to ``rejects``."""
        from sparkify.json_stream import read_records

        rejected = 0

        def reject(line_number: int, raw: bytes, err: RecordError) -> None:
            nonlocal rejected
            rejected += 1
            rejects.append(self._reject(obj, line_number, raw, err, run_id))
            if rejected > self.max_errors:
                raise TooManyRejects(
                    f"{self.table}: s3://{self.s3_bucket}/{obj.key} line {line_number}: {err} "
                    f"({rejected} rejects exceed max_errors={self.max_errors}; nothing from this "
                    "object was staged, its rejects so far are in stage_rejects)",
                    obj.key,
                )

        parser.take_shapes()  # start this object's counts afresh (a failed attempt may have left some)
        records, staged = read_records(chain.from_iterable(line_batches), parser.parse, copy.write_row, obj.key, reject)
        keys = self._key_map.counts(parser.take_shapes())
        self._check_keys(f"s3://{self.s3_bucket}/{obj.key}", obj.key, keys)
        return ObjectLoad(records_read=records, rows_staged=staged, rows_rejected=records - staged, keys=keys)

    def _check_keys(self, url: str, key: str, counts: KeyCounts) -> None:
        """Fail an object from which an expected key is absent altogether; log partial absence
        and unknown keys (see ``sparkify.key_presence``)."""
        from sparkify.key_presence import DRIFT_MIN_RECORDS, assess, drift_error, drift_warnings, parse_allowed

        min_records = DRIFT_MIN_RECORDS if self.drift_min_records is None else int(self.drift_min_records)
        drift = assess(counts, self._key_map, parse_allowed(self.allow_absent_keys), min_records)
        if drift.fails:
            raise SchemaDrift(f"{self.table}: {drift_error(url, counts, drift, self._key_map)}", key)
        for line in drift_warnings(counts, drift, self._key_map):
            self.log.warning("%s: %s: %s", self.table, url, line)

    def _reject(self, obj: SourceObject, line_number: int, line: bytes, err: RecordError, run_id: str) -> dict[str, Any]:
        return {
            "table": self.table, "s3_key": obj.key, "source_line": line_number, "field": err.field,
            "reason": str(err)[:1000], "raw_text": line[:RAW_TEXT_LIMIT].decode("utf-8", "replace"),
            "run_id": run_id, "rejected_at": _utcnow(),
        }

    def _binary_copy_types(self, columns: list[Column]) -> list[str] | None:
        """Types for a binary COPY of these columns plus source_key/source_line, or None to use text.

        Binary COPY spares formatting every value as text (psycopg) and parsing it back
        (PostgreSQL); psycopg has binary dumpers for these types only.
        """
        rows = self.warehouse.get_records(self._sql("stage/copy_source_column_types.sql"), {"table": self.table})
        types = [column.data_type.lower() for column in columns] + [data_type for (data_type,) in rows]
        return types if len(rows) == 2 and all(t in BINARY_COPY_TYPES for t in types) else None

    def _columns(self) -> list[Column]:
        from sparkify.records import Column

        rows = self.warehouse.get_records(self._sql("stage/columns.sql"), {"table": self.table})
        if not rows:
            raise AirflowFailException(f"staging table {self.table!r} does not exist; its DDL is in include/sql/create")
        # The names go into the COPY's column list: only plain identifiers are let through.
        return [Column(validate_identifier(name, "column"), data_type, length, nullable == "YES")
                for name, data_type, length, nullable in rows]

    def _jsonpaths(self) -> bytes | None:
        if not self.json_format.startswith("s3://"):
            return None
        bucket, _, key = self.json_format[len("s3://"):].partition("/")
        if self.s3.head_object(key, bucket) is None:
            raise AirflowFailException(f"JSONPaths file {self.json_format} does not exist")
        return self.s3.get_conn().get_object(Bucket=bucket, Key=key)["Body"].read()

    # -- Redshift: COPY with a manifest -----------------------------------------------------

    def _copy_from_s3(self, objects: list[SourceObject], run_id: str) -> dict[str, int]:
        from sparkify.records import FormatError, check_jsonpaths

        if not self.upsert_keys:
            raise AirflowFailException(f"{self.table}: upsert_keys are required to replace changed objects on Redshift")
        from sparkify.key_presence import KeyMap

        columns = self._columns()
        jsonpaths = self._jsonpaths()
        paths = None
        if jsonpaths is not None:
            try:
                paths = check_jsonpaths(jsonpaths, columns)
            except FormatError as err:
                raise AirflowFailException(f"{self.table}: {self.json_format}: {err}") from None
        self._key_map = KeyMap.for_format([column.name for column in columns], paths,
                                          self.json_format.strip().lower() == "auto ignorecase")
        manifest_key = f"{self.manifest_prefix}/{self.table}/{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)}.manifest"
        manifest = {"entries": [{"url": f"s3://{self.s3_bucket}/{obj.key}", "mandatory": True} for obj in objects]}
        self.s3.load_string(json.dumps(manifest), manifest_key, self.s3_bucket, replace=True)
        sql = self._sql(
            "stage/copy_from_s3.sql", columns=[column.name for column in columns], upsert_keys=self.upsert_keys,
            manifest_url=f"s3://{self.s3_bucket}/{manifest_key}", credentials=self._credentials_clause(),
            region=self.region or self.s3.conn_region_name, json_format=self.json_format.replace("'", "''"),
            max_errors=self.max_errors, stale_sql=self.stale_sql,
        )
        params = {"table": self.table, "run_id": run_id, "queued_at": _utcnow()}
        started = time.monotonic()
        report: list[tuple] = []
        with self.warehouse.transaction() as cursor:
            for statement in split_statements(sql):
                try:
                    cursor.execute(statement, params)
                except Exception as err:
                    if first_code_line(statement).upper().startswith("COPY "):
                        self._fail_with_load_errors(cursor, err)
                    raise
                if first_code_line(statement).upper().startswith("COPY "):
                    self._check_copied_columns(cursor, columns, objects)
                if first_code_line(statement).upper().startswith("SELECT"):
                    report = cursor.fetchall()  # what the change touched (stale_sql)
            loads = self._copy_counts(cursor, objects)
            for obj, load in loads.items():
                for statement in split_statements(self._sql("stage/stage_load_ledger.sql")):
                    cursor.execute(statement, {
                        **params, "s3_key": obj.key, "etag": obj.etag, "size_bytes": obj.size,
                        "lines_read": load.records_read, "rows_staged": load.rows_staged,
                        "rows_rejected": load.rows_rejected, "loaded_at": _utcnow(),
                    })
        self.log.info("%s: COPY of %d objects from manifest s3://%s/%s complete",
                      self.table, len(objects), self.s3_bucket, manifest_key)
        if self.stale_sql:
            log_report(self.log, self.table, self.stale_sql, report)
        for obj, load in list(loads.items())[:20]:
            self.log.info("%s: s3://%s/%s (%s bytes): %s records, %s staged, %d rejected", self.table, self.s3_bucket,
                          obj.key, f"{obj.size:,}", f"{load.records_read:,}", f"{load.rows_staged:,}", load.rows_rejected)
        return {
            "records_read": sum(load.records_read for load in loads.values()),
            "rows_staged": sum(load.rows_staged for load in loads.values()),
            "rows_rejected": sum(load.rows_rejected for load in loads.values()),
            "seconds": round(time.monotonic() - started, 3),
        }

    def _check_copied_columns(self, cursor: Any, columns: list[Column], objects: list[SourceObject]) -> None:
        """Redshift's COPY can't count JSON keys: fail when a column is NULL in every row it loaded
        (over more than ``drift_min_records`` rows), the trace a vanished key leaves. The check
        covers the COPY's objects together, as Redshift records no row's source object."""
        from sparkify.key_presence import DRIFT_MIN_RECORDS, parse_allowed

        rows = self._fetch(cursor, self._sql("stage/copy_column_counts.sql", columns=[c.name for c in columns]))
        if not rows:
            return
        loaded, *non_null = rows[0]
        allowed = parse_allowed(self.allow_absent_keys)
        min_records = DRIFT_MIN_RECORDS if self.drift_min_records is None else int(self.drift_min_records)
        empty = [column.name for column, count in zip(columns, non_null)
                 if not count and not self._key_map.allows(column.name, allowed)]
        if empty and loaded > min_records:
            files = ", ".join(f"s3://{self.s3_bucket}/{obj.key}" for obj in objects[:10])
            more = f" and {len(objects) - 10} more" if len(objects) > 10 else ""
            raise SchemaDrift(
                f"{self.table}: schema drift: column {', '.join(empty)} is NULL in all {loaded:,} rows the COPY of "
                f"{files}{more} loaded (COPY loads NULL for a missing JSON key). Nothing was staged. If the key "
                "may legitimately be absent, list it in the allow_absent_keys param", objects[0].key)

    def _copy_counts(self, cursor: Any, objects: list[SourceObject]) -> dict[SourceObject, ObjectLoad]:
        """Per object, Redshift's figures for the COPY just run: lines it scanned, lines it
        rejected; the rows staged follow, and together they must add up to the rows it loaded."""
        copied_sql, per_file_sql = split_statements(self._sql("stage/copy_load_counts.sql"))
        [(copied,)] = self._fetch(cursor, copied_sql)
        lines = {url: int(count) for url, count in self._fetch(cursor, per_file_sql)}
        rejected = Counter(url for url, *_ in self._fetch(cursor, self._sql("stage/copy_load_errors.sql")))
        loads = {}
        for obj in objects:
            url = f"s3://{self.s3_bucket}/{obj.key}"
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
        errors = self._fetch(cursor, self._sql("stage/copy_load_errors.sql"))
        if not errors:
            return  # not a load error (access, manifest, ...): let it propagate and retry
        for url, line, field, reason in errors[:5]:
            self.log.warning("%s: rejected %s line %s: %s%s", self.table, url, line, f"{field}: " if field else "", reason)
        url, line, field, reason = errors[0]
        raise AirflowFailException(
            f"{self.table}: {url} line {line}: {f'{field}: ' if field else ''}{reason} (the COPY stopped past "
            f"max_errors={self.max_errors}, {len(errors)} rejects in Redshift's load errors; nothing was staged)"
        ) from error

    @staticmethod
    def _fetch(cursor: Any, statement: str) -> list[tuple]:
        cursor.execute(statement)
        return cursor.fetchall()

    def _credentials_clause(self) -> str:
        from airflow.sdk.log import mask_secret

        role_arn = self.s3.conn_config.role_arn if self.s3.conn_config else None
        if role_arn:
            return f"IAM_ROLE '{role_arn}'"
        credentials = self.s3.get_credentials()
        for secret in (credentials.secret_key, credentials.token):
            if secret:
                mask_secret(secret)
        clause = f"ACCESS_KEY_ID '{credentials.access_key}' SECRET_ACCESS_KEY '{credentials.secret_key}'"
        return clause + (f" SESSION_TOKEN '{credentials.token}'" if credentials.token else "")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the S3 objects this run read in, the staging table out."""
        from sparkify.lineage import staging_lineage

        return staging_lineage(self.s3_bucket, getattr(self, "keys_read", []), getattr(self, "keys_listed", [self.s3_key]),
                               self.warehouse, self.table)

    def _sql(self, template: str, **extra: Any) -> str:
        env = self.get_template_env()
        return env.get_template(template).render(dialect=self.warehouse.dialect, serverless=self.warehouse.serverless,
                                                 table=self.table, **extra)


def key_presence_rows(counts: KeyCounts | None, key_map: KeyMap) -> Iterator[tuple[str, str | None, int, int]]:
    """The stage_key_presence rows of one object: (JSON key, column or None, records, present)
    for every mapped key, then its most frequent unknown keys."""
    if counts is None or not counts.records:
        return
    for column, present in counts.present.items():
        yield key_map.keys[column], column, counts.records, present
    ranked = sorted(counts.unknown.items(), key=lambda item: (-item[1], item[0]))[:UNKNOWN_KEYS_KEPT]
    for key, present in ranked:
        yield key[:JSON_KEY_LENGTH], None, counts.records, present


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
