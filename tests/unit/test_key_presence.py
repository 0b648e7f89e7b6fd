"""Key presence per object (sparkify.key_presence, counted by RecordParser) and the anomaly
checks' judgement (sparkify.anomalies.evaluate): the pure parts, without a database."""

from __future__ import annotations

import json

import pytest

from sparkify.anomalies import Metric, evaluate
from sparkify.json_stream import read_records
from sparkify.key_presence import assess, drift_error, drift_warnings, parse_allowed
from sparkify.records import Column, RecordParser

COLUMNS = [Column("userid", "integer"), Column("page", "character varying", 64), Column("ts", "bigint")]
JSONPATHS = json.dumps({"jsonpaths": ["$['userId']", "$['page']", "$.meta.ts"]}).encode()


def counts_of(parser: RecordParser, lines: list[bytes]):
    """Parse the lines as staging does (spilled records included) and count their keys."""
    parser.take_shapes()
    rows, rejects = [], []
    read_records(lines, parser.parse, rows.append, "key", lambda line, raw, err: rejects.append(line))
    return parser.key_map().counts(parser.take_shapes()), rows, rejects


def test_present_means_the_key_is_there_whatever_its_value():
    parser = RecordParser(COLUMNS, "s3://bucket/paths.json", JSONPATHS)
    lines = [
        b'{"userId": 1, "page": "NextSong", "meta": {"ts": 5}}',
        b'{"userId": null, "page": "Home", "meta": {"ts": 6}}',  # present, null
        b'{"page": "Home", "meta": {"ts": 7}, "userID": 3}',  # renamed
        b'{"userId": "", "page": "Home",', b' "meta": {"ts": 8}}',  # spans two lines, blank value
        b'[1, 2]',  # an array record: no keys to count (its values follow no path: all NULL)
    ]
    counts, rows, rejects = counts_of(parser, lines)
    assert counts.records == 4  # JSON objects only
    assert counts.present == {"userid": 3, "page": 4, "ts": 4}  # ts counts its top-level key, meta
    assert counts.unknown == {"userID": 1}
    assert [row[0] for row in rows] == [1, None, None, None, None] and rejects == []


def test_auto_matches_column_names_exactly_and_ignorecase_folds():
    exact = RecordParser(COLUMNS, "auto")
    counts, *_ = counts_of(exact, [b'{"userid": 1, "Page": "x", "ts": 1}', b'{"userid": 2, "page": "y", "ts": 2}'])
    assert counts.present == {"userid": 2, "page": 1, "ts": 2} and counts.unknown == {"Page": 1}
    folded = RecordParser(COLUMNS, "auto ignorecase")
    counts, *_ = counts_of(folded, [b'{"UserId": 1, "Page": "x", "TS": 1}', b'{"userid": 2, "PAGE": "y", "page": "z", "ts": 2}'])
    assert counts.present == {"userid": 2, "page": 2, "ts": 2} and counts.unknown == {}


def test_shapes_are_counted_once_per_record_whatever_the_path():
    parser = RecordParser(COLUMNS, "auto")
    good = b'{"userid": 1, "page": "x", "ts": 1}'
    bad_value = b'{"userid": "one", "page": "x", "ts": 1}'  # rejected by the general rules
    counts, rows, rejects = counts_of(parser, [good, bad_value, good])
    assert counts.records == 3 and counts.present["userid"] == 3
    assert len(rows) == 2 and rejects == [2]


def test_complete_records_count_without_a_key_tuple_and_the_rest_with_one():
    """The fast path counts a record whose every column has a value and no other key in one
    counter; any other record by its key tuple. Both add up to the same per-key counts."""
    parser = RecordParser(COLUMNS, "auto")
    complete = b'{"userid": 1, "page": "x", "ts": 1}'
    lines = [complete] * 5 + [b'{"userid": 2, "page": "y", "ts": 2, "extra": 0}', b'{"page": "y", "ts": 3}',
                              b'{"userid": null, "page": "y", "ts": 4}']
    counts, rows, rejects = counts_of(parser, lines)
    assert len(rows) == 8 and not rejects
    assert counts.records == 8 and counts.present == {"userid": 7, "page": 8, "ts": 8} and counts.unknown == {"extra": 1}
    assert parser.take_shapes() == {}  # taken once, nothing carried over to the next object
    counts, *_ = counts_of(parser, [complete])
    assert counts.records == 1 and counts.present == {"userid": 1, "page": 1, "ts": 1}


def key_counts(records: int, present: dict[str, int], unknown: dict[str, int] | None = None):
    parser = RecordParser(COLUMNS, "s3://bucket/paths.json", JSONPATHS)
    key_map = parser.key_map()
    shapes: dict[tuple, int] = {}
    for index in range(records):
        shape = tuple(key_map.keys[column] for column, count in present.items() if index < count)
        shape += tuple(key for key, count in (unknown or {}).items() if index < count)
        shapes[shape] = shapes.get(shape, 0) + 1
    return key_map, key_map.counts(shapes)


def test_a_key_absent_from_every_record_fails_and_names_file_key_and_unknown_keys():
    key_map, counts = key_counts(479, {"userid": 0, "page": 479, "ts": 479}, {"userID": 479})
    drift = assess(counts, key_map, frozenset())
    assert drift.fails and drift.absent == ["userid"]
    assert drift_error("s3://b/day.json", counts, drift, key_map) == (
        "s3://b/day.json: schema drift: expected key 'userId' (column userid) is absent from all 479 records; "
        "unknown keys appeared: 'userID' in 479 of 479 records. Nothing from this object was staged. If the key "
        "may legitimately be absent, list it in the allow_absent_keys param")


@pytest.mark.parametrize("allowed", ["userId", "USERID", " page, userid ", ["userId"]])
def test_allowed_keys_may_be_absent_by_key_or_column_name(allowed):
    key_map, counts = key_counts(50, {"userid": 0, "page": 50, "ts": 50})
    drift = assess(counts, key_map, parse_allowed(allowed))
    assert not drift.fails and drift.absent_allowed == ["userid"]
    assert drift_warnings(counts, drift, key_map) == [
        "expected key 'userId' (column userid) is absent from all 50 records (allowed by allow_absent_keys); "
        "they stage NULL"]


def test_small_objects_and_partial_absence_only_warn():
    key_map, counts = key_counts(10, {"userid": 0, "page": 10, "ts": 10})
    drift = assess(counts, key_map, frozenset(), min_records=10)
    assert not drift.fails and drift.absent_few == ["userid"]
    assert assess(counts, key_map, frozenset(), min_records=9).fails

    key_map, counts = key_counts(40, {"userid": 40, "page": 30, "ts": 40}, {"extra": 3})
    drift = assess(counts, key_map, frozenset())
    assert not drift.fails and drift.partial == ["page"]
    assert drift_warnings(counts, drift, key_map) == [
        "expected key 'page' is absent from 10 of 40 records (25.0%); they stage NULL",
        "unknown keys, not staged: 'extra' in 3 of 40 records"]


def test_nothing_to_say_of_complete_or_empty_objects():
    key_map, counts = key_counts(30, {"userid": 30, "page": 30, "ts": 30})
    drift = assess(counts, key_map, frozenset())
    assert drift_warnings(counts, drift, key_map) == [] and not drift.fails
    key_map, counts = key_counts(0, {"userid": 0, "page": 0, "ts": 0})
    assert not assess(counts, key_map, frozenset()).fails


# --------------------------------------------------------------------------- anomaly judgement

SHARE = Metric("share", "a share", "hits", "total")


def judge(window: tuple[int, int] | None, baseline: tuple[int, int] | None, factor=2.0, min_expected=20) -> str:
    values = {period: {"hits": counts[0], "total": counts[1]}
              for period, counts in (("window", window), ("baseline", baseline)) if counts}
    [result] = evaluate(values, [SHARE], factor, min_expected)
    return result.status


def test_a_drop_beyond_the_factor_fails_and_a_smaller_one_passes():
    assert judge((0, 479), (6000, 6200)) == "FAIL"
    assert judge((240, 480), (480, 480)) == "pass"  # exactly half: not beyond the factor
    assert judge((239, 480), (480, 480)) == "FAIL"
    assert judge((239, 480), (480, 480), factor=3) == "pass"
    assert judge((900, 900), (100, 1000)) == "pass"  # a rise is no loss


def test_empty_first_ever_and_sparse_windows_pass():
    assert judge(None, (100, 100)) == "pass (empty window)"
    assert judge((0, 0), (100, 100)) == "pass (empty window)"
    assert judge((0, 50), None) == "pass (no history)"
    assert judge((0, 19), (100, 100)) == "pass (too few to judge)"  # 19 expected
    assert judge((0, 20), (100, 100)) == "FAIL"
    assert judge((0, 500), (1, 100)) == "pass (too few to judge)"  # a rare value's absence
