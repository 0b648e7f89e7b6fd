"""The staging bookkeeping: which object versions are staged (stage_load_ledger), the records
rejected (stage_rejects), the JSON keys each object carried (stage_key_presence) and the staged
objects a listing no longer finds (stage_missing_objects).

The writes that go with staging an object take the engine's cursor, so that they commit or roll
back with its rows; the others open a transaction of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from sparkify.staging.changes import log_report, run_phase
from sparkify.staging.base import utcnow
from sparkify.warehouse import split_statements

if TYPE_CHECKING:
    from sparkify.key_presence import KeyCounts, KeyMap
    from sparkify.staging.base import ObjectLoad, SourceObject, StageJob

# stage_key_presence keeps an object's most frequent unknown keys, each cut to the column's length.
UNKNOWN_KEYS_KEPT = 50
JSON_KEY_LENGTH = 256


class Ledger:
    def __init__(self, job: StageJob):
        self.job = job
        self.table = job.table

    # -- stage_load_ledger ----------------------------------------------------------------

    def staged_versions(self) -> dict[str, str]:
        """Every object staged into the table, key -> ETag."""
        rows = self.job.warehouse.get_records(self.job.render("stage/stage_load_ledger_versions.sql"), {"table": self.table})
        return dict(rows)

    def lock_and_read_versions(self, cursor: Any, params: Mapping[str, Any]) -> dict[str, str]:
        """Take the per-object locks of ``params["source_keys"]`` and read their staged versions."""
        cursor.execute(self.job.render("stage/lock_objects.sql"), params)
        cursor.execute(self.job.render("stage/stage_load_ledger_etags.sql"), params)
        return dict(cursor.fetchall())

    @staticmethod
    def version_row(obj: SourceObject, load: ObjectLoad, **extra: Any) -> dict[str, Any]:
        return {"source_key": obj.key, "etag": obj.etag, "size_bytes": obj.size, "lines_read": load.records_read,
                "rows_staged": load.rows_staged, "rows_rejected": load.rows_rejected, **extra}

    def record_versions(self, cursor: Any, rows: list[dict[str, Any]]) -> None:
        """Record object versions as staged (rows of ``version_row`` with table, run_id, loaded_at)."""
        for statement in split_statements(self.job.render("stage/stage_load_ledger.sql")):
            cursor.executemany(statement, rows)

    # -- stage_rejects --------------------------------------------------------------------

    def record_rejects(self, cursor: Any, rejects: list[dict[str, Any]]) -> None:
        if rejects:
            cursor.executemany(self.job.render("stage/stage_rejects.sql"), rejects)

    def keep_rejects(self, obj: SourceObject, rejects: list[dict[str, Any]]) -> None:
        """Record the rejects of an object that failed to stage, replacing those of an earlier
        failed attempt; its staging succeeding later replaces them again (no duplicates)."""
        params = {"table": self.table, "source_keys": [obj.key]}
        with self.job.warehouse.transaction() as cursor:
            if self.lock_and_read_versions(cursor, params).get(obj.key) == obj.etag:
                return  # another run staged this version meanwhile, with its own rejects
            cursor.execute(self.job.render("stage/stage_rejects_delete.sql"), params)
            cursor.executemany(self.job.render("stage/stage_rejects.sql"), rejects)

    # -- stage_key_presence ---------------------------------------------------------------

    def record_key_presence(self, cursor: Any, loads: Mapping[SourceObject, ObjectLoad], key_map: KeyMap,
                            params: Mapping[str, Any], run_id: str, loaded_at: Any) -> None:
        """Replace the key presence of the objects in ``params["source_keys"]`` with that of ``loads``."""
        cursor.execute(self.job.render("stage/stage_key_presence_delete.sql"), params)
        cursor.executemany(self.job.render("stage/stage_key_presence.sql"), [
            {"table": self.table, "source_key": obj.key, "json_key": key, "column_name": column, "records": records,
             "present": present, "run_id": run_id, "loaded_at": loaded_at}
            for obj, load in loads.items() for key, column, records, present in key_presence_rows(load.keys, key_map)
        ])

    # -- stage_missing_objects ------------------------------------------------------------

    def forget_found_again(self, listed: Iterable[str]) -> None:
        """Objects recorded as missing that the listing finds again are missing no more."""
        params = {"table": self.table}
        found = sorted(set(listed).intersection(key for (key,) in self.job.warehouse.get_records(
            self.job.render("stage/stage_missing_objects_found.sql"), params)))
        if found:
            self.job.log.info("%s: %d objects recorded as missing are listed again: %s", self.table, len(found),
                              ", ".join(found[:5]))
            with self.job.warehouse.transaction() as cursor:
                cursor.executemany(self.job.render("stage/stage_missing_objects_found.sql", found=True),
                                   [{**params, "source_key": key} for key in found])

    def record_missing(self, missing: dict[str, str], run_id: str, remove: bool) -> None:
        """Log and record staged objects the listing no longer found; with ``remove``, remove
        their rows, ledger entries and key presence, and queue what that changes (stale_sql)."""
        job, render, log = self.job, self.job.render, self.job.log
        for key in sorted(missing)[:20]:
            log.warning("%s: s3://%s/%s was staged (ETag %s) but is no longer listed; %s", self.table,
                        job.s3_bucket, key, missing[key],
                        "removing its rows" if remove else "its rows stay staged (remove_deleted_objects is off)")
        params = {"table": self.table, "source_keys": sorted(missing), "run_id": run_id, "queued_at": utcnow()}
        record = split_statements(render("stage/stage_missing_objects.sql"))
        per_key = [{**params, "source_key": key, "rows_removed": remove, "seen_missing_at": params["queued_at"]}
                   for key in sorted(missing)]
        with job.warehouse.transaction() as cursor:
            if remove:
                cursor.execute(render("stage/lock_objects.sql"), params)
                if job.stale_sql:
                    run_phase(cursor, render, job.stale_sql, "before", params)
                for statement in split_statements(render("stage/staging_object_rows.sql")):
                    cursor.execute(statement, params)
            for statement in record:
                cursor.executemany(statement, per_key)
            if remove:
                cursor.execute(render("stage/stage_load_ledger_delete.sql"), params)
                cursor.execute(render("stage/stage_key_presence_delete.sql"), params)
                if job.stale_sql:
                    log_report(log, self.table, job.stale_sql, run_phase(cursor, render, job.stale_sql, "after", params))


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
