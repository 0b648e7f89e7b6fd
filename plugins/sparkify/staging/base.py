"""What the staging engines share: the objects they stage, what they return, how they fail,
and the staging table's settings and hooks (``StageJob``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, Sequence

from airflow.sdk.exceptions import AirflowFailException

from sparkify.warehouse import validate_identifier

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from sparkify.key_presence import KeyCounts
    from sparkify.records import Column
    from sparkify.warehouse import Warehouse

@dataclass(frozen=True)
class SourceObject:
    key: str
    etag: str
    size: int


def list_objects(s3: S3Hook, bucket: str, keys: Iterable[str], log: Any) -> Iterator[SourceObject]:
    """The objects each key names: a prefix (ending in ``/``) lists those under it, any other key
    is looked up on its own; a key with no object is logged and gives none."""
    for key in keys:
        if key.endswith("/"):
            for meta in s3.iter_file_metadata(prefix=key, bucket_name=bucket):
                if not meta["Key"].endswith("/"):
                    yield SourceObject(meta["Key"], meta["ETag"].strip('"'), meta["Size"])
            continue
        head = s3.head_object(key, bucket)
        if head is None:
            log.info("no object s3://%s/%s; nothing to stage from it", bucket, key)
            continue
        yield SourceObject(key, head["ETag"].strip('"'), head["ContentLength"])


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
    rejects: list[dict[str, Any]] = field(default_factory=list)  # stage_rejects rows (PostgreSQL path)


@dataclass
class StageResult:
    """What an engine staged: totals over the objects, and the objects it could not stage
    (the others are staged and committed)."""

    records_read: int = 0
    rows_staged: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    failures: list[AirflowFailException] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        return {"records_read": self.records_read, "rows_staged": self.rows_staged,
                "rows_rejected": self.rows_rejected, "seconds": self.seconds}


class StagingEngine(Protocol):
    def stage(self, objects: list[SourceObject], run_id: str) -> StageResult: ...


class ObjectNotStaged(AirflowFailException):
    """An object that can't be staged; ``key`` names it, ``rejects`` holds the records it rejected
    before failing (PostgreSQL path)."""

    def __init__(self, message: str, key: str, rejects: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.key = key
        self.rejects = rejects if rejects is not None else []


class TooManyRejects(ObjectNotStaged):
    """An object has more rejects than max_errors. Its batch rolls back and stages again without
    it, its rejects are kept; the task fails once every other object is staged."""


class SchemaDrift(ObjectNotStaged):
    """An expected JSON key is absent from every record of an object."""


@dataclass(frozen=True)
class StageJob:
    """The staging table, its settings and the hooks to reach it, as the operator resolved them."""

    table: str
    s3_bucket: str
    json_format: str
    max_errors: int
    stale_sql: str | None
    allow_absent_keys: str | Sequence[str]
    drift_min_records: int | None
    warehouse: Warehouse
    s3: S3Hook
    render: Callable[..., str]  # renders a template under include/sql for this table and dialect
    log: Any

    def url(self, key: str) -> str:
        return f"s3://{self.s3_bucket}/{key}"

    def min_records(self) -> int:
        from sparkify.key_presence import DRIFT_MIN_RECORDS

        return DRIFT_MIN_RECORDS if self.drift_min_records is None else int(self.drift_min_records)

    def columns(self) -> list[Column]:
        from sparkify.records import Column

        rows = self.warehouse.get_records(self.render("stage/columns.sql"), {"table": self.table})
        if not rows:
            raise AirflowFailException(f"staging table {self.table!r} does not exist; its DDL is in include/sql/create")
        # The names go into the COPY's column list: only plain identifiers are let through.
        return [Column(validate_identifier(name, "column"), data_type, length, nullable == "YES")
                for name, data_type, length, nullable in rows]

    def jsonpaths(self) -> bytes | None:
        if not self.json_format.startswith("s3://"):
            return None
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        bucket, key = S3Hook.parse_s3_url(self.json_format)
        if self.s3.head_object(key, bucket) is None:
            raise AirflowFailException(f"JSONPaths file {self.json_format} does not exist")
        # The bytes as stored (read_key would decode them): the parser reads JSON from bytes.
        return self.s3.get_conn().get_object(Bucket=bucket, Key=key)["Body"].read()


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
