"""Find the JSON records in a file the way Redshift's ``COPY ... FORMAT AS JSON`` does.

COPY reads a stream of JSON values separated by any whitespace: one per line, several on a
line, or one pretty-printed over many lines (objects, or arrays addressed by a JSONPaths
file). Most files hold one record per line, so each line is first parsed on its own: the
fast path. Only a line that is not one complete value goes to ``_Spill``, which reads values
across lines with the standard library's ``JSONDecoder.raw_decode`` until it is back at a
line end, and then hands over to the fast path again.

A record's line number is the line where it starts. A malformed record is rejected from its
first line up to the next line that starts a record (``{`` or ``[`` first), where reading
resumes, so one broken record costs one reject, never the rest of the file.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from typing import Callable, Iterable, Iterator

from sparkify.records import MAX_RECORD_BYTES, NotOneValue, RecordError

Reject = Callable[[int, bytes, RecordError], None]

_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace
_RECORD_START = re.compile(r"[ \t\r]*[\[{]")
_RAW_TEXT_KEPT = 64 * 1024  # of a malformed record's text, for its reject


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# NaN and Infinity are not JSON; orjson, which parses every record, refuses them too.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def split_lines(chunks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Split a byte stream on newlines, a chunk's complete lines at a time, holding no more
    than one chunk and one line. A CR before the newline stays: it is JSON whitespace."""
    pending = b""
    for chunk in chunks:
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield lines
    if pending:
        yield [pending]


def read_records(lines: Iterable[bytes], parse: Callable[[bytes], tuple], write_row: Callable[[tuple], object],
                 key: str, reject: Reject) -> tuple[int, int]:
    """Parse every record in ``lines``: write each good one as ``(*row, key, line)`` and pass
    each bad one to ``reject(line, raw, error)``. Blank lines hold no record.

    Returns (records read, rows written); records read - rows written were rejected.
    This is the per-record loop of staging, so it keeps to local names.
    """
    lines = iter(lines)
    number = records = staged = 0
    for line in lines:
        number += 1
        try:
            write_row((*parse(line), key, number))
            records += 1
            staged += 1
        except NotOneValue:
            if not line.strip():
                continue
            spill = _Spill(line, number, lines)
            for start, raw, error in spill:
                records += 1
                if error is None:
                    try:
                        row = parse(raw)
                    except RecordError as err:
                        error = err
                    else:
                        write_row((*row, key, start))
                        staged += 1
                        continue
                reject(start, raw, error)
            number = spill.last_line
        except RecordError as err:
            records += 1
            reject(number, line, err)
    return records, staged


class _Spill:
    """The records from a line that is not one complete JSON value, read across as many lines
    as they span, up to the first line end that follows a complete record.

    Iterating yields (start line, record bytes, None) for each complete value, or
    (start line, text, error) for one that is malformed, cut short or over the size limit;
    ``last_line`` is then the number of the last line read.
    """

    def __init__(self, line: bytes, number: int, more: Iterator[bytes]):
        self._more = more
        self._text = ""
        self._starts: list[int] = []  # offsets in _text of its lines
        self._first_line = number  # the number of _text's first line
        self.last_line = number - 1
        self._exhausted = False
        self._append(line)

    def _append(self, line: bytes) -> None:
        # surrogateescape keeps bytes that aren't UTF-8; parsing the record then rejects them.
        self._starts.append(len(self._text))
        self._text += line.decode("utf-8", "surrogateescape") + "\n"
        self.last_line += 1

    def _read_more(self, count: int) -> bool:
        """Append up to ``count`` more lines; False when there were none."""
        added = 0
        for line in self._more:
            self._append(line)
            added += 1
            if added == count:
                break
        self._exhausted = added < count
        return added > 0

    def _line_index(self, offset: int) -> int:
        return bisect_right(self._starts, offset) - 1

    def _restart(self, index: int) -> int:
        """Drop the lines before line ``index`` of the text; returns the offset dropped."""
        offset = self._starts[index]
        self._text = self._text[offset:]
        self._starts = [start - offset for start in self._starts[index:]]
        self._first_line += index
        return offset

    def _raw(self, start: int, end: int) -> bytes:
        return self._text[start:min(end, start + _RAW_TEXT_KEPT)].encode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[tuple[int, bytes, RecordError | None]]:
        position = 0
        lines_to_read = 1
        while True:
            position = _WHITESPACE.match(self._text, position).end()
            if position == len(self._text):
                return  # at a line end after complete records: back to the fast path
            index = self._line_index(position)
            if index:
                position -= self._restart(index)  # the lines before hold nothing more
                index = 0
            try:
                _, end = _DECODER.raw_decode(self._text, position)
            except ValueError as err:  # JSONDecodeError, or NaN/Infinity
                content_end = len(self._text.rstrip())
                at_end = getattr(err, "pos", 0) >= content_end
                if at_end and content_end - position <= MAX_RECORD_BYTES and not self._exhausted:
                    # The record goes on past the text read so far: read twice as many lines
                    # as last time, so a long record is parsed a logarithmic number of times.
                    if self._read_more(lines_to_read):
                        lines_to_read *= 2
                        continue
                lines_to_read = 1
                if content_end - position > MAX_RECORD_BYTES:
                    error = RecordError(f"record runs past the {MAX_RECORD_BYTES:,}-byte JSON limit")
                elif not isinstance(err, json.JSONDecodeError):
                    error = RecordError(f"malformed JSON: {err}")
                elif at_end:
                    error = RecordError(f"malformed JSON: the file ends inside the record ({err.msg})")
                else:
                    line = self._first_line + self._line_index(err.pos)
                    error = RecordError(f"malformed JSON: {err.msg} (line {line})")
                if not (yield from self._reject_until_next_record(position, error)):
                    return
                position = 0
                continue
            yield self._first_line + index, self._text[position:end].encode("utf-8", "surrogateescape"), None
            position = end

    def _reject_until_next_record(self, position: int, error: RecordError) -> Iterator[tuple]:
        """Yield the reject of the malformed record at ``position``, which runs up to the next
        line that starts a record. Returns True with the text restarted at that line, False at
        the end of the file."""
        start_line = self._first_line + self._line_index(position)
        for index in range(self._line_index(position) + 1, len(self._starts)):
            if _RECORD_START.match(self._text, self._starts[index]):
                yield start_line, self._raw(position, self._starts[index]), error
                self._restart(index)
                return True
        # Read on, keeping only the start of the malformed text for its reject.
        raw = self._raw(position, len(self._text))
        for line in self._more:
            self.last_line += 1
            if _RECORD_START.match(line.decode("utf-8", "surrogateescape")):
                yield start_line, raw, error
                self._text, self._starts, self._first_line = "", [], self.last_line
                self.last_line -= 1
                self._append(line)
                return True
            if len(raw) < _RAW_TEXT_KEPT:
                raw += line[:_RAW_TEXT_KEPT] + b"\n"
        yield start_line, raw, error
        return False
