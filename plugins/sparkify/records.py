"""Turn JSON records into staging rows with Redshift COPY's JSON semantics.

The PostgreSQL path applies the same rules Redshift's ``COPY ... FORMAT AS JSON``
applies, so both targets stage the same rows and reject the same records:

* ``'auto'`` matches top-level keys to column names (``'auto ignorecase'`` ignores case);
  a JSONPaths file maps its N paths, in order, to the table's first N data columns, and
  may address a JSON array record by index (``$[0]``);
* unknown keys are ignored, missing keys load as NULL;
* ``""`` and blank strings load as NULL (EMPTYASNULL, BLANKSASNULL);
* strings longer than the column are truncated to its length in bytes, as Redshift counts
  VARCHAR lengths, never splitting a character (TRUNCATECOLUMNS);
* a value is converted from its JSON text the way COPY converts text (see ``_to_int``,
  ``_to_float`` and ``_to_epoch_millis`` for the rules and the reasons);
* a NOT NULL column left NULL, or a value of the wrong type, rejects the record;
* so does a record over 4 MB, malformed JSON or bytes that are not UTF-8.

Where the records are in a file (one per line, several per line, pretty-printed) is
``sparkify.json_stream``'s business; ``sparkify.record_values`` holds the value rules and
``sparkify.jsonpaths`` the JSONPaths files.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

import orjson

from sparkify.jsonpaths import check_jsonpaths, follow
from sparkify.record_values import (
    INTEGER_RANGES, INTEGER_TYPES, TEXT_TYPES, EPOCH, Column, FormatError, NotOneValue, RecordError,
    blank_to_none, converter,
)

# Redshift's COPY rejects JSON objects over 4 MB; staging on PostgreSQL keeps the same limit.
MAX_RECORD_BYTES = 4 * 1024 * 1024


class RecordParser:
    """Parses one JSON record (bytes) into a row tuple for the given columns."""

    def __init__(self, columns: list[Column], json_format: str, jsonpaths: bytes | None = None):
        self.columns = columns
        self._converters = [converter(column) for column in columns]
        mode = json_format.strip().lower()
        if mode in ("auto", "auto ignorecase"):
            self._ignore_case = mode == "auto ignorecase"
            self._paths = None
        elif jsonpaths is not None:
            self._paths = check_jsonpaths(jsonpaths, columns)
        else:
            raise FormatError(f"JSON format {json_format!r} must be 'auto', 'auto ignorecase' or a JSONPaths file")
        # The key tuple of every JSON object record parsed -> how many records had it: what
        # sparkify.key_presence turns into per-key counts (take_shapes, once per object). A record
        # whose every column has a value and which holds no other key (the common case) is only
        # counted in _complete, by the fast path: building and hashing its key tuple would cost
        # more than a tenth of its parse.
        self.shapes: dict[tuple, int] = {}
        self._complete = [0]
        self._full_shape = tuple(dict.fromkeys(path[0] for path in self._paths if isinstance(path[0], str))) \
            if self._paths is not None else tuple(column.name for column in columns)
        self._fast = _compile_fast_path(columns, self._paths, getattr(self, "_ignore_case", False),
                                        self.shapes, self._complete, len(self._full_shape))

    def take_shapes(self) -> dict[tuple, int]:
        """The key tuples of the JSON object records parsed since the last call, with their counts."""
        shapes = dict(self.shapes)
        if self._complete[0]:
            shapes[self._full_shape] = shapes.get(self._full_shape, 0) + self._complete[0]
        self.shapes.clear()
        self._complete[0] = 0
        return shapes

    def key_map(self):
        """The top-level JSON key each column is read from (``sparkify.key_presence.KeyMap``)."""
        from sparkify.key_presence import KeyMap

        return KeyMap.for_format([column.name for column in self.columns], self._paths,
                                 getattr(self, "_ignore_case", False))

    def parse(self, raw: bytes) -> tuple:
        """The row of one JSON record, given as its bytes (one line, or a record's text)."""
        if len(raw) > MAX_RECORD_BYTES:
            raise RecordError(f"record is {len(raw):,} bytes, over the {MAX_RECORD_BYTES:,}-byte JSON limit")
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            if _is_utf8(raw):
                raise NotOneValue(f"malformed JSON: {err}") from None
            raise NotOneValue("not valid UTF-8") from None
        if record.__class__ is dict:
            if self._fast is not None:
                row = self._fast(record)  # counts the record's keys when it gives the row
                if row is not None:
                    return row
            # One tuple and one dict update: the keys' hashes are cached (orjson interns short
            # keys), and an object's records share a handful of shapes.
            shape = tuple(record)
            self.shapes[shape] = self.shapes.get(shape, 0) + 1
        return self.row(record)

    def row(self, record: Any) -> tuple:
        """The row of one decoded JSON record, by the general rules."""
        if isinstance(record, list) and self._paths is None:
            raise RecordError("a JSON array record needs a JSONPaths file ('auto' matches object keys)")
        if not isinstance(record, (dict, list)):
            raise RecordError(f"expected a JSON object or array, got {type(record).__name__}")
        values = self._extract(record)
        row = []
        for column, convert, value in zip(self.columns, self._converters, values):
            value = blank_to_none(value)
            if value is None:
                if not column.nullable:
                    raise RecordError("required value is missing or empty", column.name)
                row.append(None)
                continue
            try:
                row.append(convert(value))
            except ValueError as err:
                raise RecordError(str(err), column.name) from None
        return tuple(row)

    def _extract(self, record: dict | list) -> list[Any]:
        if self._paths is not None:
            return [follow(record, path) for path in self._paths]
        if self._ignore_case:
            folded = {key.lower(): value for key, value in record.items()}
            return [folded.get(column.name.lower()) for column in self.columns]
        return [record.get(column.name) for column in self.columns]



def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _compile_fast_path(columns: list[Column], paths: list[tuple] | None, ignore_case: bool, shapes: dict[tuple, int],
                       complete: list[int], top_keys: int) -> Callable[[dict], tuple | None] | None:
    """A row function specialised to these columns, for records whose every value is plainly valid.

    It returns the same tuple ``parse`` would, or ``None`` whenever a value needs anything but the
    common case (wrong type, non-finite number, out-of-range timestamp, a NOT NULL column
    missing, ...); ``parse`` then runs the general rules, which give the row or the reject. So
    it changes speed only: one generated function per table instead of per-value calls.

    When it gives the row it also counts the record's keys: in ``complete[0]`` when every column
    has a value and the record holds ``top_keys`` keys (so exactly the mapped ones), else its key
    tuple in ``shapes``.
    """
    if ignore_case:
        return None
    namespace: dict[str, Any] = {"_follow": follow, "_EPOCH": EPOCH, "_timedelta": timedelta,
                                 "_shapes": shapes, "_complete": complete}
    body = ["def _fast(record):", "    get = record.get", "    complete = True", "    try:"]
    # Per column, the common case is tested first: a value of the column's own JSON type.
    for index, column in enumerate(columns):
        path = paths[index] if paths is not None else (column.name,)
        if len(path) == 1 and isinstance(path[0], str):
            body.append(f"        v = get({path[0]!r})")
        else:
            namespace[f"_path{index}"] = path
            body.append(f"        v = follow(record, _path{index})")
        missing = f"c{index} = None; complete = False" if column.nullable else "return None"
        kind = column.data_type.lower()
        if kind in TEXT_TYPES:
            limit = column.max_length
            # Within the limit in bytes: ASCII (one byte a character, which isascii() knows
            # without a scan) or checked by encoding; longer strings take the general rule.
            fits = f"len(v) <= {limit} and (v.isascii() or len(v.encode()) <= {limit})" if limit else "True"
            body.append(f"        if v.__class__ is str and v.strip() and {fits}: c{index} = v")
            body.append(f"        elif v is None or (v.__class__ is str and not v.strip()): {missing}")  # missing or blank
        elif kind in INTEGER_TYPES:
            low, high = INTEGER_RANGES[kind]
            body.append(f"        if v.__class__ is int and {low} <= v <= {high}: c{index} = v")
            body.append(f"        elif v is None: {missing}")
            body.append(f"        elif v.__class__ is str and v.isascii() and v.isdigit() and (n := int(v)) <= {high}: "
                        f"c{index} = n")
            if column.nullable:
                body.append(f"        elif v == '': c{index} = None; complete = False")
        elif kind == "double precision":
            body.append(f"        if v.__class__ is float and v - v == 0.0: c{index} = v")
            body.append(f"        elif v is None: {missing}")
        elif kind.startswith("timestamp"):
            # timedelta(days, seconds, microseconds, milliseconds), positionally: the fastest call
            body.append(f"        if v.__class__ is int: c{index} = _EPOCH + _timedelta(0, 0, 0, v)")
            body.append(f"        elif v is None: {missing}")
        elif kind == "boolean":
            body.append(f"        if v.__class__ is bool: c{index} = v")
            body.append(f"        elif v is None: {missing}")
        else:
            body.append(f"        if v is None: {missing}")  # REAL's range, and the rest, by the general rules
        body.append("        else: return None")
    body.append("    except Exception:")
    body.append("        return None")
    body.append(f"    if complete and len(record) == {top_keys}:")
    body.append("        _complete[0] += 1")
    body.append("    else:")
    body.append("        shape = tuple(record)")
    body.append("        _shapes[shape] = _shapes.get(shape, 0) + 1")
    body.append(f"    return ({''.join(f'c{i}, ' for i in range(len(columns)))})")
    exec("\n".join(body), namespace)
    return namespace["_fast"]

