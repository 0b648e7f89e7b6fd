"""OpenLineage for the Sparkify operators: the datasets each task read and wrote.

The OpenLineage provider calls an operator's ``get_openlineage_facets_on_complete`` after the
task has run (in a forked process, or a thread, bounded by ``[openlineage] execution_timeout``)
and emits the result. When no transport is configured the provider disables itself and never
calls it, so none of this runs. Each function here returns what it could work out and logs,
never raises: lineage is a report about the task, never a reason for it to fail.

Datasets are named the way the provider's own hooks and SQL parser name them, so our tasks
join up with any other producer of the same tables:

* warehouse tables: namespace ``postgres://host:port`` or ``redshift://cluster.region:5439``
  (``hook.get_openlineage_database_info``), name ``database.schema.table``, with a schema
  facet read from the catalogue (``SQLParser.parse_table_schemas``);
* S3 objects: namespace ``s3://<bucket>``, name the object key.

Rendered SQL is read by the provider's ``SQLParser`` (openlineage-sql), which follows our
INSERT ... SELECT, MERGE-style DELETE/UPDATE and CTAS statements.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sparkify.warehouse import Warehouse, split_statements

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

log = logging.getLogger("sparkify.lineage")

# Above this many objects, a staging run's inputs are named by the prefix (or the directory of
# the day's key) it read them from: a lineage graph with a node per song file is unreadable.
MAX_OBJECT_DATASETS = 20
# The parser does not read the driver's placeholders; a value never changes which tables a
# statement touches, so NULL stands in for each.
PLACEHOLDER = re.compile(r"%\(\w+\)s")
TEMP_TABLE = re.compile(r"\bCREATE\s+TEMP(?:ORARY)?\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)


def _empty() -> OperatorLineage:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage()


def never_raises(build):
    """Run a lineage builder; on any error log it and return empty lineage."""

    @functools.wraps(build)
    def guarded(*args: Any, **kwargs: Any) -> OperatorLineage:
        try:
            return build(*args, **kwargs)
        except Exception as err:  # lineage must never fail the task it describes
            log.warning("OpenLineage: could not describe this task's datasets: %s: %s", type(err).__name__, err)
            return _empty()

    return guarded


# -- the warehouse, as the provider's hooks name it ------------------------------------------------


class WarehouseNaming:
    """Namespace, database and default schema of one warehouse connection, and the provider's
    SQL parser set up for its dialect."""

    def __init__(self, warehouse: Warehouse):
        from airflow.providers.openlineage.sqlparser import SQLParser

        self.hook = warehouse.hook
        connection = self.hook.get_connection(warehouse.conn_id)
        self.info = self.hook.get_openlineage_database_info(connection)
        self.namespace = SQLParser.create_namespace(self.info)
        self.parser = SQLParser(
            dialect=self.hook.get_openlineage_database_dialect(connection),
            default_schema=self.hook.get_openlineage_default_schema(),
        )

    def tables(self, inputs: Sequence[str] = (), outputs: Sequence[str] = ()) -> tuple[list[Dataset], list[Dataset]]:
        """Datasets for tables by name, with their schema facets from the catalogue."""
        from openlineage.common.sql import DbTableMeta

        found = self.parser.parse_table_schemas(
            hook=self.hook, inputs=[DbTableMeta(name) for name in inputs],
            outputs=[DbTableMeta(name) for name in outputs], database_info=self.info, namespace=self.namespace,
        )
        if not any(found):  # no catalogue rows (e.g. no access): the names alone
            found = self.parser.get_metadata_from_parser(
                inputs=[DbTableMeta(name) for name in inputs], outputs=[DbTableMeta(name) for name in outputs],
                database_info=self.info, namespace=self.namespace,
            )
        return found

    def sql(self, sql: str | Iterable[str]) -> OperatorLineage:
        """What rendered SQL reads and writes, by the provider's SQL parser, without the
        temporary tables it builds on the way, and without a written table among the inputs
        (a merge reads the rows it replaces)."""
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.facet_v2 import sql_job

        statements = [s for text in ([sql] if isinstance(sql, str) else sql) for s in split_statements(text)]
        parsed = self.parser.generate_openlineage_metadata_from_sql(
            sql=[PLACEHOLDER.sub("NULL", statement).replace("%%", "%") for statement in statements],
            hook=self.hook, database_info=self.info, use_connection=True,
        )
        temporary = {name.lower() for statement in statements for name in TEMP_TABLE.findall(statement)}
        outputs = [d for d in parsed.outputs if _table(d) not in temporary]
        written = {d.name for d in outputs}
        inputs = [d for d in parsed.inputs if _table(d) not in temporary and d.name not in written]
        return OperatorLineage(
            inputs=inputs, outputs=outputs, run_facets=parsed.run_facets,
            job_facets={**parsed.job_facets, "sql": sql_job.SQLJobFacet(query=";\n".join(statements))},
        )


def _table(dataset: Dataset) -> str:
    return dataset.name.rsplit(".", 1)[-1].lower()


# -- S3 ---------------------------------------------------------------------------------------------


def s3_datasets(bucket: str, keys: Sequence[str], listed: Sequence[str] = ()) -> list[Dataset]:
    """One dataset per object key; beyond MAX_OBJECT_DATASETS, one per listed prefix (``song_data``)
    or, for keys listed one by one, per directory (``log_data/2018/11``)."""
    from openlineage.client.event_v2 import Dataset

    namespace = f"s3://{bucket}"
    if len(keys) > MAX_OBJECT_DATASETS:
        prefixes = [prefix for prefix in listed if prefix.endswith("/")]
        names = []
        for key in keys:
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            name = prefix.rstrip("/") if prefix else key.rsplit("/", 1)[0]
            if name not in names:
                names.append(name)
        keys = names
    return [Dataset(namespace=namespace, name=key) for key in keys]


# -- one builder per operator -------------------------------------------------------------------------


@never_raises
def staging_lineage(bucket: str, keys_read: Sequence[str], listed: Sequence[str], warehouse: Warehouse,
                    table: str) -> OperatorLineage:
    """S3 objects read in, the staging table out (with its schema)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    _, outputs = WarehouseNaming(warehouse).tables(outputs=[table])
    return OperatorLineage(inputs=s3_datasets(bucket, keys_read, listed), outputs=outputs)


@never_raises
def sql_lineage(warehouse: Warehouse, sql: str | Iterable[str]) -> OperatorLineage:
    """The tables rendered SQL reads and writes."""
    return WarehouseNaming(warehouse).sql(sql)


@never_raises
def report_lineage(warehouse: Warehouse, queries: Iterable[str], bucket: str, keys_written: Sequence[str]) -> OperatorLineage:
    """The tables the report's queries read in, the report's objects out."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    read = WarehouseNaming(warehouse).sql(queries)
    return OperatorLineage(inputs=read.inputs, outputs=s3_datasets(bucket, keys_written),
                           run_facets=read.run_facets, job_facets=read.job_facets)
