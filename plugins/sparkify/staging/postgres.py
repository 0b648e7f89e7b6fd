"""The PostgreSQL engine: stream each object from S3, parse its records (sparkify.records, the
rules of Redshift's JSON COPY) and write them with ``COPY FROM STDIN``, with rejects, key
presence and the ledger entry in the same transaction."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from airflow.sdk.exceptions import AirflowFailException

from sparkify.staging.changes import log_report, run_phase
from sparkify.staging.base import ObjectLoad, SchemaDrift, StageResult, TooManyRejects, utcnow
from sparkify.staging.ledger import Ledger
from sparkify.warehouse import split_statements

if TYPE_CHECKING:
    from psycopg import Copy

    from sparkify.key_presence import KeyCounts, KeyMap
    from sparkify.records import Column, RecordError, RecordParser
    from sparkify.staging.base import SourceObject, StageJob

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


class PostgresStreamEngine:
    """Stages objects one transaction per batch: large objects alone, small ones (song files)
    fetched concurrently and staged many per transaction, since a round trip per file would
    dominate. An object that can't be staged is left out of its batch and returned as a failure."""

    def __init__(self, job: StageJob):
        self.job = job
        self.table = job.table
        self.ledger = Ledger(job)
        # Set by stage() from the table's columns and the JSON format, for its objects.
        self.key_map: KeyMap | None = None
        self.copy_types: list[str] | None = None

    def stage(self, objects: list[SourceObject], run_id: str) -> StageResult:
        from sparkify.records import FormatError, RecordParser

        job = self.job
        try:
            parser = RecordParser(job.columns(), job.json_format, job.jsonpaths())
        except FormatError as err:
            raise AirflowFailException(f"{self.table}: {job.json_format}: {err}") from None
        self.key_map = parser.key_map()
        self.copy_types = self._binary_copy_types(parser.columns)
        copy_sql = job.render("stage/copy_from_stdin.sql", columns=[column.name for column in parser.columns],
                              binary=self.copy_types is not None)
        started = time.monotonic()
        result = StageResult()
        small = [obj for obj in objects if obj.size <= SMALL_OBJECT_BYTES]
        batches = [[obj] for obj in objects if obj.size > SMALL_OBJECT_BYTES]
        batches += [small[i:i + SMALL_OBJECTS_PER_BATCH] for i in range(0, len(small), SMALL_OBJECTS_PER_BATCH)]
        verbose = len(objects) <= 20
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            for number, batch in enumerate(batches, start=1):
                loads, failures = self._stage_batch(batch, parser, copy_sql, run_id, pool)
                result.failures += failures
                for obj, load in loads.items():
                    result.records_read += load.records_read
                    result.rows_staged += load.rows_staged
                    result.rows_rejected += load.rows_rejected
                    if verbose:
                        job.log.info("%s: s3://%s/%s (%s bytes): %s records, %s staged, %d rejected",
                                     self.table, job.s3_bucket, obj.key, f"{obj.size:,}", f"{load.records_read:,}",
                                     f"{load.rows_staged:,}", load.rows_rejected)
                if not verbose:
                    job.log.info("%s: batch %d/%d staged, %s rows so far", self.table, number, len(batches),
                                 f"{result.rows_staged:,}")
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _stage_batch(self, batch: list[SourceObject], parser: RecordParser, copy_sql: str, run_id: str,
                     pool: ThreadPoolExecutor) -> tuple[dict[SourceObject, ObjectLoad], list[AirflowFailException]]:
        """Replace the staged rows of these objects and record their versions, in one transaction.
        An object that can't be staged (too many rejects, schema drift) is left out, its error
        returned, and the rest of the batch staged again without it."""
        loads: dict[SourceObject, ObjectLoad] = {}
        failures: list[AirflowFailException] = []
        rejects: list[dict[str, Any]] = []
        while batch:
            try:
                loads = self._replace_objects(batch, parser, copy_sql, run_id, pool)
            except (TooManyRejects, SchemaDrift) as failure:
                rejects = failure.rejects
                # The batch rolled back: the failing object keeps what it staged before (rows and
                # ledger entry, so a later run tries it again), and its rejects are kept to look at.
                self.job.log.error("%s", failure)
                failures.append(failure)
                if isinstance(failure, TooManyRejects):
                    culprit = next(obj for obj in batch if obj.key == failure.key)
                    self.ledger.keep_rejects(culprit, failure.rejects)
                batch = [obj for obj in batch if obj.key != failure.key]
                continue
            rejects = [reject for load in loads.values() for reject in load.rejects]
            break
        for reject in rejects[:5]:
            self.job.log.warning("%s: rejected %s line %s: %s", self.table, reject["source_key"], reject["source_line"],
                                 reject["reason"])
        if len(rejects) > 5:
            self.job.log.warning("%s: %d more rejects in stage_rejects", self.table, len(rejects) - 5)
        return loads, failures

    def _replace_objects(self, batch: list[SourceObject], parser: RecordParser, copy_sql: str, run_id: str,
                         pool: ThreadPoolExecutor) -> dict[SourceObject, ObjectLoad]:
        job, render = self.job, self.job.render
        params: dict[str, Any] = {"table": self.table, "source_keys": [obj.key for obj in batch]}
        loads: dict[SourceObject, ObjectLoad] = {}
        with job.warehouse.transaction() as cursor:
            # Under the per-object locks, skip versions another run staged meanwhile.
            staged_now = self.ledger.lock_and_read_versions(cursor, params)
            todo = [obj for obj in batch if staged_now.get(obj.key) != obj.etag]
            if len(todo) < len(batch):
                job.log.info("%s: %d objects were staged meanwhile by another run; skipped", self.table, len(batch) - len(todo))
            if not todo:
                return loads
            params.update(source_keys=[obj.key for obj in todo], run_id=run_id, queued_at=utcnow())
            if job.stale_sql:
                run_phase(cursor, render, job.stale_sql, "before", params)
            for statement in split_statements(render("stage/staging_object_rows.sql")):
                cursor.execute(statement, params)
            if len(todo) == 1:
                sources = [(todo[0], self._line_batches(todo[0]))]
            else:
                sources = zip(todo, pool.map(lambda obj: list(self._line_batches(obj)), todo))
            with cursor.copy(copy_sql) as copy:
                if self.copy_types is not None:
                    copy.set_types(self.copy_types)
                for obj, line_batches in sources:
                    loads[obj] = self._copy_object(copy, obj, line_batches, parser, run_id)
            self.ledger.record_rejects(cursor, [reject for load in loads.values() for reject in load.rejects])
            loaded_at = utcnow()
            self.ledger.record_versions(cursor, [
                self.ledger.version_row(obj, load, table=self.table, run_id=run_id, loaded_at=loaded_at)
                for obj, load in loads.items()
            ])
            self.ledger.record_key_presence(cursor, loads, self.key_map, params, run_id, loaded_at)
            if job.stale_sql:
                log_report(job.log, self.table, job.stale_sql, run_phase(cursor, render, job.stale_sql, "after", params))
        return loads

    def _line_batches(self, obj: SourceObject) -> Iterator[list[bytes]]:
        """Stream the exact version listed (If-Match), as the lines of each chunk."""
        from sparkify.json_stream import split_lines

        body = self.job.s3.get_conn().get_object(Bucket=self.job.s3_bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')["Body"]
        return split_lines(self._with_progress(obj, body.iter_chunks(READ_CHUNK_BYTES)))

    def _with_progress(self, obj: SourceObject, chunks: Iterable[bytes]) -> Iterator[bytes]:
        read, next_report = 0, PROGRESS_EVERY_BYTES
        for chunk in chunks:
            yield chunk
            read += len(chunk)
            if read >= next_report:
                self.job.log.info("%s: %s ... %s of %s bytes read", self.table, obj.key, f"{read:,}", f"{obj.size:,}")
                next_report += PROGRESS_EVERY_BYTES

    def _copy_object(self, copy: Copy, obj: SourceObject, line_batches: Iterable[list[bytes]], parser: RecordParser,
                     run_id: str) -> ObjectLoad:
        """Write one object's records to the COPY; its bad records come back in ``rejects``."""
        from sparkify.json_stream import read_records

        max_errors = self.job.max_errors
        rejects: list[dict[str, Any]] = []

        def reject(line_number: int, raw: bytes, err: RecordError) -> None:
            rejects.append(self._reject(obj, line_number, raw, err, run_id))
            if len(rejects) > max_errors:
                raise TooManyRejects(
                    f"{self.table}: s3://{self.job.s3_bucket}/{obj.key} line {line_number}: {err} "
                    f"({len(rejects)} rejects exceed max_errors={max_errors}; nothing from this "
                    "object was staged, its rejects so far are in stage_rejects)",
                    obj.key, rejects,
                )

        parser.take_shapes()  # start this object's counts afresh (a failed attempt may have left some)
        records, staged = read_records(chain.from_iterable(line_batches), parser.parse, copy.write_row, obj.key, reject)
        keys = self.key_map.counts(parser.take_shapes())
        self._check_keys(self.job.url(obj.key), obj.key, keys, rejects)
        return ObjectLoad(records_read=records, rows_staged=staged, rows_rejected=records - staged, keys=keys,
                          rejects=rejects)

    def _check_keys(self, url: str, key: str, counts: KeyCounts, rejects: list[dict[str, Any]]) -> None:
        """Fail an object from which an expected key is absent altogether; log partial absence
        and unknown keys (see ``sparkify.key_presence``)."""
        from sparkify.key_presence import assess, drift_error, drift_warnings, parse_allowed

        drift = assess(counts, self.key_map, parse_allowed(self.job.allow_absent_keys), self.job.min_records())
        if drift.fails:
            raise SchemaDrift(f"{self.table}: {drift_error(url, counts, drift, self.key_map)}", key, rejects)
        for line in drift_warnings(counts, drift, self.key_map):
            self.job.log.warning("%s: %s: %s", self.table, url, line)

    def _reject(self, obj: SourceObject, line_number: int, line: bytes, err: RecordError, run_id: str) -> dict[str, Any]:
        return {
            "table": self.table, "source_key": obj.key, "source_line": line_number, "field": err.field,
            "reason": str(err)[:1000], "raw_text": line[:RAW_TEXT_LIMIT].decode("utf-8", "replace"),
            "run_id": run_id, "rejected_at": utcnow(),
        }

    def _binary_copy_types(self, columns: list[Column]) -> list[str] | None:
        """Types for a binary COPY of these columns plus source_key/source_line, or None to use text.

        Binary COPY spares formatting every value as text (psycopg) and parsing it back
        (PostgreSQL); psycopg has binary dumpers for these types only.
        """
        rows = self.job.warehouse.get_records(self.job.render("stage/copy_source_column_types.sql"), {"table": self.table})
        types = [column.data_type.lower() for column in columns] + [data_type for (data_type,) in rows]
        return types if len(rows) == 2 and all(t in BINARY_COPY_TYPES for t in types) else None
