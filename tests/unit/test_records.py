"""Redshift COPY JSON semantics on the PostgreSQL path (pure functions)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from sparkify.jsonpaths import check_jsonpaths, parse_jsonpaths
from sparkify.records import Column, FormatError, RecordError, RecordParser

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
    # TRUNCATECOLUMNS (to 8 bytes, as Redshift counts VARCHAR(8): "ó" takes two, so it goes
    # whole), numeric strings into INTEGER, epochmillisecs keeping ms, EMPTYASNULL.
    assert row == ("Sigur R", 218.93179, 7, datetime(2018, 11, 12, 2, 33, 20, 123000), None)


def test_auto_matches_column_names_and_ignorecase_folds_case():
    record = {"artist": "A", "length": 1, "sessionid": 1, "ts": 0, "USERID": 5}
    assert parse(record, "auto", None)[4] is None
    assert parse(record, "auto ignorecase", None)[4] == 5


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        (b'{"sessionId": 1, "ts": 1', None, "malformed JSON"),
        (b'{"sessionId": 1, "ts": "\xff\xfe"}', None, "UTF-8"),
        (b"42", None, "expected a JSON object or array"),
        (b"[1, 2]", "sessionid", "required"),  # key paths find nothing in an array
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


EQUIVALENCE_COLUMNS = COLUMNS + [
    Column("title", "text"), Column("flag", "boolean"), Column("page", "character varying", 4, nullable=False),
]
TRICKY_VALUES = [
    None, "", "  ", "x", " padded ", "\u3000", "long enough to cut", "ééé", "日本", "7", " 7 ", "-7", "+7", "٣", "1_000",
    "1.5", "1e3", "nan", "inf", "2147483648", "99999999999999999999", 0, 7, -7, 2 ** 31, -(2 ** 31) - 1,
    1541990000123, 10**20, 1.5, 2.0, 1e3, float("inf"), True, False, {"a": 1}, [1, "b"],
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


# How Redshift's COPY converts a JSON value for each column type, case by case. COPY converts
# the value's text as it converts any text ("COPY attempts to implicitly convert the strings in
# the source data to the data type of the target column"), so an INTEGER takes only ASCII digits
# with a sign (load error 1207 "Invalid digit" otherwise, 1216 on overflow), a float takes a
# decimal or exponent form, and neither takes NaN, infinity or surrounding spaces.
VALUE_RULES = [
    # (column type, JSON value, staged value or None if the record is rejected, the rule)
    ("integer", 7, 7, "a JSON integer"),
    ("integer", "7", 7, "a number written as a string converts"),
    ("integer", "-7", -7, "with a sign"),
    ("integer", "+7", 7, "with a plus sign"),
    ("integer", "٣", None, "Arabic-Indic digit: not an ASCII digit, error 1207"),
    ("integer", "1_000", None, "underscore: invalid digit (Python's int() would take it)"),
    ("integer", " 7", None, "leading space: invalid digit ' ', error 1207"),
    ("integer", "7 ", None, "trailing space: invalid digit"),
    ("integer", True, None, "JSON true is the text 'true' to COPY: invalid digit"),
    ("integer", False, None, "JSON false likewise"),
    ("integer", 3.7, None, "a fraction: invalid digit '.'"),
    ("integer", 3.0, None, "3.0 is written with a fraction too"),
    ("integer", 1e3, None, "an exponent form: invalid digit 'e'"),
    ("integer", "1e3", None, "an exponent form as a string"),
    ("integer", 2 ** 31, None, "past INTEGER's range: overflow, error 1216"),
    ("integer", "2147483648", None, "past the range, as a string"),
    ("integer", -(2 ** 31), -(2 ** 31), "the lowest INTEGER"),
    ("bigint", 2 ** 31, 2 ** 31, "BIGINT's wider range"),
    ("smallint", 40000, None, "past SMALLINT's range"),
    ("double precision", 218.93179, 218.93179, "a JSON number"),
    ("double precision", 200, 200.0, "a JSON integer"),
    ("double precision", "218.5", 218.5, "a number written as a string"),
    ("double precision", 1.5e3, 1500.0, "an exponent form"),
    ("double precision", "1.5E-3", 0.0015, "an exponent form as a string"),
    ("double precision", ".5", 0.5, "no digit before the point"),
    ("double precision", "nan", None, "NaN: Redshift can't load it"),
    ("double precision", "inf", None, "infinity: likewise"),
    ("double precision", "Infinity", None, "infinity spelt out"),
    ("double precision", " 1.5", None, "a leading space"),
    ("double precision", "1.5 ", None, "a trailing space"),
    ("double precision", "١٫٥", None, "non-ASCII digits"),
    ("double precision", "1_0.5", None, "an underscore (Python's float() would take it)"),
    ("double precision", True, None, "a boolean"),
    ("real", 1e39, None, "past REAL's range"),
    ("real", 1.5, 1.5, "within REAL's range"),
    ("timestamp without time zone", 1541105830796, datetime(2018, 11, 1, 20, 57, 10, 796000), "epoch milliseconds"),
    ("timestamp without time zone", "1541105830796", datetime(2018, 11, 1, 20, 57, 10, 796000), "as a string"),
    ("timestamp without time zone", 1541105830796.0, None, "epoch milliseconds as a float: not a whole count"),
    ("timestamp without time zone", 1541105830796.5, None, "with a fraction of a millisecond"),
    ("timestamp without time zone", "2018-11-01", None, "a date: not epoch milliseconds"),
    ("character varying", 39, "39", "userId written as a number loads its text"),
    ("character varying", 1.5, "1.5", "a float loads its text"),
    ("character varying", True, "true", "a boolean loads its text"),
    ("character varying", {"a": [1]}, '{"a": [1]}', "a nested object loads as JSON text"),
    ("character varying", "  ", None, "blank: NULL (BLANKSASNULL), not a reject"),
]


@pytest.mark.parametrize(("data_type", "value", "staged", "rule"), VALUE_RULES, ids=[rule for *_, rule in VALUE_RULES])
def test_value_rules_follow_redshift_copy(data_type, value, staged, rule):
    parser = RecordParser([Column("v", data_type), Column("k", "integer", nullable=False)], "auto")
    line = json.dumps({"v": value, "k": 1}).encode()
    if staged is None and data_type != "character varying":
        with pytest.raises(RecordError) as raised:
            parser.parse(line)
        assert raised.value.field == "v", rule
    else:
        row = parser.parse(line)
        assert row[0] == staged and type(row[0]) is type(staged), rule


def test_userid_as_a_number_or_a_string_stages_the_same():
    parser = RecordParser([Column("userid", "integer")], "auto")
    assert parser.parse(b'{"userid": 39}') == parser.parse(b'{"userid": "39"}') == (39,)


def test_truncation_counts_bytes_and_keeps_characters_whole():
    parser = RecordParser([Column("v", "character varying", 5)], "auto")
    assert parser.parse(json.dumps({"v": "日本語"}).encode()) == ("日",)  # 3 bytes each: a second would make 6
    assert parser.parse(json.dumps({"v": "abcdefgh"}).encode()) == ("abcde",)
    assert parser.parse(json.dumps({"v": "é" * 2}).encode()) == ("éé",)


def test_numeric_columns_are_refused_rather_than_rounded_differently():
    # Redshift truncates to a DECIMAL's scale where PostgreSQL rounds; rather than stage
    # different values on the two targets, the PostgreSQL path says it can't.
    with pytest.raises(FormatError, match="numeric"):
        RecordParser([Column("v", "numeric")], "auto")
