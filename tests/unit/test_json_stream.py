"""Finding JSON records in a file as Redshift's COPY does (pure functions, no servers).

Every layout COPY's JSON reader accepts must give the same rows as one record per line:
its "COPY from JSON format" page shows objects and arrays pretty-printed over several
lines and several objects on one line.
"""

from __future__ import annotations

import json
from itertools import chain

import pytest

from sparkify.json_stream import read_records, split_lines
from sparkify.records import MAX_RECORD_BYTES, Column, RecordParser

COLUMNS = [
    Column("id", "integer", nullable=False),
    Column("title", "character varying", 64),
    Column("tags", "character varying", 64),
]
RECORDS = [
    {"id": 1, "title": "Plain", "tags": ["a", "b"]},
    {"id": 2, "title": "Braces } and [ in \"text\"\n", "tags": {"nested": {"deep": [1, 2]}}},
    {"id": 3, "title": "Ünïcödé ✓", "tags": None},
]
EXPECTED = [(1, "Plain", '["a", "b"]'), (2, 'Braces } and [ in "text"\n', '{"nested": {"deep": [1, 2]}}'), (3, "Ünïcödé ✓", None)]


def read(data: bytes, chunk: int = 1 << 20, parser: RecordParser | None = None):
    """(records, rows with their start line, rejects as (line, reason)) for a file's bytes."""
    parser = parser or RecordParser(COLUMNS, "auto")
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    rows, rejects = [], []
    records, staged = read_records(
        chain.from_iterable(split_lines(chunks)), parser.parse, rows.append, "key",
        lambda line, raw, error: rejects.append((line, str(error), raw)),
    )
    assert records == staged + len(rejects)  # every record is staged or rejected
    assert len(rows) == staged
    return records, [(row[:-2], row[-1]) for row in rows], [(line, reason) for line, reason, _ in rejects]


def one_per_line(records) -> bytes:
    return b"".join(json.dumps(record, ensure_ascii=False).encode() + b"\n" for record in records)


def pretty(records, indent=4) -> bytes:
    return b"\n".join(json.dumps(record, ensure_ascii=False, indent=indent).encode() for record in records) + b"\n"


def test_one_record_per_line():
    assert read(one_per_line(RECORDS)) == (3, list(zip(EXPECTED, [1, 2, 3])), [])


def test_pretty_printed_records_start_on_their_first_line():
    data = pretty(RECORDS)
    starts = [i + 1 for i, line in enumerate(data.split(b"\n")) if line.startswith(b"{")]
    assert read(data) == (3, list(zip(EXPECTED, starts)), [])


def test_several_records_on_one_line_and_mixed_layouts():
    data = (json.dumps(RECORDS[0]) + "  " + json.dumps(RECORDS[1]) + "\n").encode() + pretty(RECORDS[2:], indent=1)
    assert read(data) == (3, list(zip(EXPECTED, [1, 1, 2])), [])
    # No whitespace at all between records is still a stream of values.
    assert read(b'{"id": 1}{"id": 2}')[:2] == (2, [((1, None, None), 1), ((2, None, None), 1)])


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_records_split_across_read_chunks(chunk):
    for data in (one_per_line(RECORDS), pretty(RECORDS), pretty(RECORDS).replace(b"\n", b"\r\n")):
        assert read(data, chunk=chunk) == read(data)


def test_crlf_line_endings_and_no_final_newline():
    lines = one_per_line(RECORDS)
    assert read(lines.replace(b"\n", b"\r\n")) == read(lines)
    assert read(lines.rstrip(b"\n")) == read(lines)
    assert read(pretty(RECORDS).replace(b"\n", b"\r\n").rstrip()) == read(pretty(RECORDS))


def test_blank_lines_and_whitespace_between_records_are_not_records():
    data = b"\n   \n" + one_per_line(RECORDS[:1]) + b"\t\r\n\n" + pretty(RECORDS[1:2]) + b"\n \n"
    records, rows, rejects = read(data)
    assert (records, [row for row, _ in rows], rejects) == (2, EXPECTED[:2], [])
    assert [line for _, line in rows] == [3, 6]


def test_json_arrays_as_records_through_jsonpaths_indexes():
    parser = RecordParser(COLUMNS, "s3://bucket/paths.json", json.dumps({"jsonpaths": ["$[0]", "$[1]", "$[2][0]"]}).encode())
    data = b'[\n    1006410,\n    "Amazon Redshift Database Developer Guide",\n    ["x"]\n]\n[100540, "S3", []]\n'
    assert read(data, parser=parser) == (2, [((1006410, "Amazon Redshift Database Developer Guide", "x"), 1),
                                               ((100540, "S3", None), 6)], [])
    # 'auto' matches keys, so an array record is a reject (with its line), not a crash.
    records, rows, rejects = read(data)
    assert (records, rows) == (2, []) and [line for line, _ in rejects] == [1, 6]
    assert "JSONPaths" in rejects[0][1]


def test_a_malformed_record_is_one_reject_and_reading_resumes_at_the_next_record():
    data = (
        b'{"id": 1, "title":\n'             # cut short: the next line starts a record
        b'{"id": 2}\n'
        b'{\n  "id": 3,\n  "title" "no colon"\n}\n'  # broken in its middle, over four lines
        b'{"id": 4} trailing words\n'
        b'{"id": NaN}\n'
        b'{"id": 5}\n'
    )
    records, rows, rejects = read(data)
    assert rows == [((2, None, None), 2), ((4, None, None), 7), ((5, None, None), 9)]
    assert [line for line, _ in rejects] == [1, 3, 7, 8]
    assert all("malformed JSON" in reason for _, reason in rejects)
    assert "line 5" in rejects[1][1]  # where the parser gave up, besides where the record starts
    assert records == 7


def test_a_record_cut_short_by_the_end_of_the_file():
    records, rows, rejects = read(b'{"id": 1}\n{\n  "id": 2,\n')
    assert (records, rows) == (2, [((1, None, None), 1)])
    assert rejects == [(2, "malformed JSON: the file ends inside the record (Expecting property name enclosed in double quotes)")]


def test_a_record_over_the_size_limit_is_rejected_without_reading_the_rest_into_memory():
    inner = b'  "title": "' + b"x" * 1000 + b'",\n'
    lines = MAX_RECORD_BYTES // len(inner) + 10
    data = b'{"id": 1}\n{\n' + inner * lines + b'  "id": 2\n}\n{"id": 3}\n'
    records, rows, rejects = read(data, chunk=1 << 16)
    assert rows == [((1, None, None), 1), ((3, None, None), lines + 5)]
    assert [(line, "JSON limit" in reason) for line, reason in rejects] == [(2, True)]


def test_bytes_that_are_not_utf8_reject_their_record_only():
    data = b'{"id": 1, "title": "\xff"}\n{\n  "id": 2,\n  "title": "\xfe"\n}\n{"id": 3}\n'
    records, rows, rejects = read(data)
    assert rows == [((3, None, None), 6)]
    assert [(line, reason) for line, reason in rejects] == [(1, "not valid UTF-8"), (2, "not valid UTF-8")]


def test_reject_keeps_the_records_text():
    parser = RecordParser(COLUMNS, "auto")
    raws = []
    read_records(chain.from_iterable(split_lines([b'{\n "id": "x"\n}\n'])), parser.parse, lambda row: None, "k",
                 lambda line, raw, error: raws.append((line, raw, error.field)))
    assert raws == [(1, b'{\n "id": "x"\n}', "id")]
