"""Redshift COPY JSON semantics on the PostgreSQL path (pure functions)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from sparkify.records import Column, FormatError, RecordError, RecordParser, check_jsonpaths, parse_jsonpaths

COLUMNS = [
    Column("artist", "character varying", 8),
    Column("length", "double precision"),
    Column("sessionid", "integer", nullable=False),
    Column("ts", "timestamp without time zone", nullable=False),
    Column("userid", "integer"),
]
JSONPATHS = json.dumps({"jsonpaths": ["$['artist']", "$.length", "$['sessionId']", "$['ts']", "$['userId']"]}).encode()


def parse(record: dict | bytes, json_format="s3://b/paths.json", paths=JSONPATHS):
    line = record if isinstance(record, bytes) else json.dumps(record).encode()
    return RecordParser(COLUMNS, json_format, paths).parse(line)


def test_jsonpaths_map_fields_in_order_with_copy_conversions():
    row = parse({"artist": "Sigur Rós and friends", "length": 218.93179, "sessionId": "7", "ts": 1541990000123,
                 "userId": "", "extra": {"ignored": True}})
    # TRUNCATECOLUMNS, numeric strings into INTEGER, epochmillisecs keeping ms, EMPTYASNULL.
    assert row == ("Sigur Ró", 218.93179, 7, datetime(2018, 11, 12, 2, 33, 20, 123000), None)


def test_auto_matches_column_names_and_ignorecase_folds_case():
    record = {"artist": "A", "length": 1, "sessionid": 1, "ts": 0, "USERID": 5}
    assert parse(record, "auto", None)[4] is None
    assert parse(record, "auto ignorecase", None)[4] == 5


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        (b'{"sessionId": 1, "ts": 1', None, "malformed JSON"),
        (b'{"sessionId": 1, "ts": "\xff\xfe"}', None, "UTF-8"),
        (b"[1, 2]", None, "expected a JSON object"),
        (b'{"sessionId": 1, "ts": "2018-11-01"}', "ts", "epoch milliseconds"),
        (b'{"sessionId": 1, "ts": 1, "length": "long"}', "length", "not a number"),
        (b'{"sessionId": 1, "ts": 1, "userId": "abc"}', "userid", "not an integer"),
        (b'{"ts": 1}', "sessionid", "required"),
        (b'{"sessionId": "  ", "ts": 1}', "sessionid", "required"),
    ],
)
def test_bad_records_are_rejected_with_the_field_at_fault(line, field, reason):
    with pytest.raises(RecordError) as raised:
        parse(line)
    assert raised.value.field == field
    assert reason in str(raised.value)


def test_jsonpaths_must_fit_the_table():
    with pytest.raises(FormatError, match="3 paths but the table has 5"):
        RecordParser(COLUMNS, "s3://b/p.json", json.dumps({"jsonpaths": ["$.a", "$.b", "$.c"]}).encode())
    with pytest.raises(FormatError):
        parse_jsonpaths(b'{"paths": []}')
    with pytest.raises(FormatError):
        parse_jsonpaths(b'{"jsonpaths": ["artist"]}')
    assert parse_jsonpaths(b'{"jsonpaths": ["$[\'a\'][0].b"]}') == [("a", 0, "b")]
    # The same check the Redshift path runs before its COPY.
    assert check_jsonpaths(JSONPATHS, COLUMNS) == [("artist",), ("length",), ("sessionId",), ("ts",), ("userId",)]
    with pytest.raises(FormatError, match="5 paths but the table has 4"):
        check_jsonpaths(JSONPATHS, COLUMNS[:4])


def test_records_over_redshifts_4mb_json_limit_are_rejected():
    huge = json.dumps({"sessionId": 1, "ts": 1, "artist": "x" * (5 * 1024 * 1024)}).encode()
    with pytest.raises(RecordError, match="over the 4,194,304-byte JSON limit"):
        parse(huge)


EQUIVALENCE_COLUMNS = COLUMNS + [Column("title", "text"), Column("flag", "boolean"), Column("page", "character varying", 4, nullable=False)]
TRICKY_VALUES = [
    None, "", "  ", "x", " padded ", "\u3000", "long enough to cut", "7", " 7 ", "-7", "+7", "٣", "1.5", "nan", "inf",
    0, 7, -7, 1541990000123, 10**20, 1.5, 2.0, float("inf"), True, False, {"a": 1}, [1, "b"],
]


def outcome(parser: RecordParser, line: bytes):
    try:
        return parser.parse(line)
    except RecordError as err:
        return ("rejected", err.field, str(err))


@pytest.mark.parametrize("column", [column.name for column in EQUIVALENCE_COLUMNS])
def test_the_fast_path_gives_what_the_general_rules_give(column):
    fast = RecordParser(EQUIVALENCE_COLUMNS, "auto", None)
    general = RecordParser(EQUIVALENCE_COLUMNS, "auto", None)
    general._fast = None  # the fast path only ever changes speed, never a row or a reject
    valid = {"artist": "A", "length": 1.5, "sessionid": 1, "ts": 1541990000123, "userid": 2, "title": "T",
             "flag": True, "page": "Next"}
    for value in [*TRICKY_VALUES, "missing"]:
        record = {key: val for key, val in valid.items() if key != column or value != "missing"}
        if value != "missing":
            record[column] = value
        line = json.dumps(record).encode()
        assert outcome(fast, line) == outcome(general, line), (column, value)
