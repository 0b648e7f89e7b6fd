"""Facts about the warehouse and its sources that every part of the project shares.

Light on purpose (Airflow is imported only for the Assets, when asked for): the DAG files,
operators, tests, benchmark and scripts import it, and the DAG files are parsed often.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Asset

AWS_CONN_ID = "sparkify_aws"
WAREHOUSE_CONN_ID = "sparkify_warehouse"

# One app-event log object per UTC day: a strftime pattern of the day.
EVENTS_KEY = "log_data/%Y/%m/%Y-%m-%d-events.json"
SONGS_PREFIX = "song_data/"

STAR_TABLES = ("songplays", "users", "songs", "artists", "time")
DIMENSION_TABLES = ("songs", "artists", "users", "time")  # the order the dimension load runs them
# Staging, its bookkeeping, and the load state the star schema is derived with.
SUPPORT_TABLES = (
    "staging_events", "staging_songs", "stage_load_ledger", "stage_key_presence", "stage_rejects",
    "stage_missing_objects",
    "loaded_hours", "stale_hours", "stale_users", "stale_song_matches",
)
# Every table include/sql/create/ defines (none references another, so any order works);
# schema_version last, as it records that the others exist.
CREATE_ORDER = (*SUPPORT_TABLES, *STAR_TABLES, "schema_version")
# Columns renamed since their table was first deployed: (table, old name, new name), oldest first.
# The DDL (include/sql/create) knows only the current names and CREATE TABLE IF NOT EXISTS leaves
# an existing table as it is, so this history is kept here, with the other facts about the
# tables: sparkify.schema renames what a warehouse still has under an old name before the DDL
# runs. Keep an entry while a warehouse from before it may still be upgraded.
RENAMED_COLUMNS = (
    ("stage_load_ledger", "s3_key", "source_key"),
    ("stage_key_presence", "s3_key", "source_key"),
    ("stage_missing_objects", "s3_key", "source_key"),
)
ASSET_GROUP = "sparkify-warehouse"


@cache
def star_assets() -> dict[str, Asset]:
    """The Asset of each star-schema table, which its load task updates.

    ``x-`` schemes are Airflow's convention for URIs without provider semantics: the same
    logical table lives in PostgreSQL locally and in Redshift in production, so the URI
    names the warehouse and table rather than a host.
    """
    from airflow.sdk import Asset

    return {table: Asset(name=f"sparkify.{table}", uri=f"x-sparkify://warehouse/public/{table}", group=ASSET_GROUP)
            for table in STAR_TABLES}
