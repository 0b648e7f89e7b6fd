from __future__ import annotations

import logging

from sparkify.lineage import MAX_OBJECT_DATASETS, s3_datasets, sql_lineage
from sparkify.warehouse import Warehouse


def names(datasets):
    return [(dataset.namespace, dataset.name) for dataset in datasets]


def test_objects_are_named_by_key_up_to_the_limit():
    keys = [f"song_data/A/B/{n:03}.json" for n in range(MAX_OBJECT_DATASETS)]
    assert names(s3_datasets("b", keys, ["song_data/"])) == [("s3://b", key) for key in keys]


def test_beyond_the_limit_objects_are_named_by_the_prefix_they_were_listed_under():
    keys = [f"song_data/{letter}/{n:03}.json" for letter in "AB" for n in range(MAX_OBJECT_DATASETS)]
    assert names(s3_datasets("b", keys, ["song_data/"])) == [("s3://b", "song_data")]


def test_beyond_the_limit_keys_listed_one_by_one_are_named_by_their_directory():
    keys = [f"log_data/2018/{month:02}/2018-{month:02}-{day:02}-events.json" for month in (10, 11) for day in range(1, 29)]
    assert names(s3_datasets("b", keys, keys)) == [("s3://b", "log_data/2018/10"), ("s3://b", "log_data/2018/11")]


def test_lineage_that_cannot_be_worked_out_is_empty_not_an_error(caplog):
    with caplog.at_level(logging.WARNING, logger="sparkify.lineage"):
        lineage = sql_lineage(Warehouse("no_such_connection"), "INSERT INTO songs SELECT * FROM staging_songs")
    assert (lineage.inputs, lineage.outputs) == ([], [])
    assert "could not describe this task's datasets" in caplog.text
