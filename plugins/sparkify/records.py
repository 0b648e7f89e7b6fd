"""Turn JSON text into staging rows with Redshift COPY's JSON semantics.

The PostgreSQL path applies the same rules Redshift's ``COPY ... FORMAT AS JSON``
applies, so both targets stage the same rows and reject the same records:

* ``'auto'`` matches top-level keys to column names (``'auto ignorecase'`` ignores case);
  a JSONPaths file maps its N paths, in order, to the table's first N data columns;
* unknown keys are ignored, missing keys load as NULL;
* ``""`` and blank strings load as NULL (EMPTYASNULL, BLANKSASNULL);
* strings longer than the column are truncated (TRUNCATECOLUMNS);
* TIMESTAMP columns take epoch milliseconds (TIMEFORMAT 'epochmillisecs');
* a NOT NULL column left NULL, or a value of the wrong type, rejects the record;
* so does a record over 4 MB, malformed JSON or bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import orjson

EPOCH = datetime(1970, 1, 1)
# Redshift's COPY rejects JSON objects over 4 MB; staging on PostgreSQL keeps the same limit.
MAX_RECORD_BYTES = 4 * 1024 * 1024
_PATH_TOKEN = re.compile(r"""\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\[\s*(\d+)\s*\]|\.([A-Za-z_][\w]*)""")


class RecordError(ValueError):
    """One input record that can't be staged; ``field`` names the column at fault."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field


class FormatError(ValueError):
    """The JSON format (``'auto'`` or a JSONPaths file) doesn't fit the table."""


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    max_length: int | None = None
    nullable: bool = True


def parse_jsonpaths(document: bytes | str) -> list[tuple[str | int, ...]]:
    """Parse a Redshift JSONPaths file into a list of key paths."""
    try:
        paths = json.loads(document)["jsonpaths"]
    except (ValueError, KeyError, TypeError) as err:
        raise FormatError(f"not a JSONPaths file (expected {{\"jsonpaths\": [...]}}): {err}") from None
    if not isinstance(paths, list) or not paths:
        raise FormatError("JSONPaths file has an empty or invalid 'jsonpaths' list")
    return [_parse_path(path) for path in paths]


def check_jsonpaths(document: bytes | str, columns: list[Column]) -> list[tuple[str | int, ...]]:
    """The paths of a JSONPaths file, which must map one to one onto the table's data columns."""
    paths = parse_jsonpaths(document)
    if len(paths) != len(columns):
        raise FormatError(
            f"JSONPaths file has {len(paths)} paths but the table has {len(columns)} data columns "
            f"({', '.join(c.name for c in columns)})"
        )
    return paths


def _parse_path(path: Any) -> tuple[str | int, ...]:
    if not isinstance(path, str) or not path.startswith("$"):
        raise FormatError(f"JSONPath {path!r} must start with '$'")
    keys: list[str | int] = []
    position = 1
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if not match:
            raise FormatError(f"JSONPath {path!r} is not in bracket or dot notation")
        single, double, index, dotted = match.groups()
        keys.append(int(index) if index is not None else next(k for k in (single, double, dotted) if k is not None))
        position = match.end()
    if not keys:
        raise FormatError(f"JSONPath {path!r} selects the whole record")
    return tuple(keys)


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _to_text(max_length: int | None) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, str):
            value = json.dumps(value)
        return value[:max_length] if max_length else value

    return convert


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    raise ValueError(f"{_shown(value)} is not an integer")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("boolean is not a number")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{_shown(value)} is not a number") from None
    else:
        raise ValueError(f"{_shown(value)} is not a number")
    if not math.isfinite(number):
        raise ValueError(f"{_shown(value)} is not a finite number")
    return number


def _to_epoch_millis(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{_shown(value)} is not epoch milliseconds")
    try:
        return EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        raise ValueError(f"{_shown(value)} is out of range for epoch milliseconds") from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"{_shown(value)} is not a boolean")


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_INTEGER_TYPES = {"smallint", "integer", "bigint"}
_FLOAT_TYPES = {"real", "double precision", "numeric", "decimal"}
_TEXT_TYPES = {"character varying", "text", "character", "varchar", "char"}


def _converter(column: Column) -> Callable[[Any], Any]:
    kind = column.data_type.lower()
    if kind in _TEXT_TYPES:
        return _to_text(column.max_length)
    if kind in _INTEGER_TYPES:
        return _to_int
    if kind in _FLOAT_TYPES:
        return _to_float
    if kind.startswith("timestamp"):
        return _to_epoch_millis
    if kind == "boolean":
        return _to_bool
    raise FormatError(f"column {column.name} has type {column.data_type}, which JSON staging doesn't support")


class RecordParser:
    """Parses one JSON record (bytes) into a row tuple for the given columns."""

    def __init__(self, columns: list[Column], json_format: str, jsonpaths: bytes | None = None):
        self.columns = columns
        self._converters = [_converter(column) for column in columns]
        mode = json_format.strip().lower()
        if mode in ("auto", "auto ignorecase"):
            self._ignore_case = mode == "auto ignorecase"
            self._paths = None
        elif jsonpaths is not None:
            self._paths = check_jsonpaths(jsonpaths, columns)
        else:
            raise FormatError(f"JSON format {json_format!r} must be 'auto', 'auto ignorecase' or a JSONPaths file")
        self._fast = _compile_fast_path(columns, self._paths, getattr(self, "_ignore_case", False))

    def parse(self, line: bytes) -> tuple:
        if len(line) > MAX_RECORD_BYTES:
            raise RecordError(f"record is {len(line):,} bytes, over the {MAX_RECORD_BYTES:,}-byte JSON limit")
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            if _is_utf8(line):
                raise RecordError(f"malformed JSON: {err}") from None
            raise RecordError("not valid UTF-8") from None
        if record.__class__ is dict and self._fast is not None:
            row = self._fast(record)
            if row is not None:
                return row
        if not isinstance(record, dict):
            raise RecordError(f"expected a JSON object, got {type(record).__name__}")
        values = self._extract(record)
        row = []
        for column, convert, value in zip(self.columns, self._converters, values):
            value = _blank_to_none(value)
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

    def _extract(self, record: dict) -> list[Any]:
        if self._paths is not None:
            return [_follow(record, path) for path in self._paths]
        if self._ignore_case:
            folded = {key.lower(): value for key, value in record.items()}
            return [folded.get(column.name.lower()) for column in self.columns]
        return [record.get(column.name) for column in self.columns]


def _follow(record: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        if isinstance(key, int):
            record = record[key] if isinstance(record, list) and key < len(record) else None
        else:
            record = record.get(key) if isinstance(record, dict) else None
        if record is None:
            return None
    return record


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _compile_fast_path(columns: list[Column], paths: list[tuple] | None, ignore_case: bool) -> Callable[[dict], tuple | None] | None:
    """A row function specialised to these columns, for records whose every value is plainly valid.

    It returns the same tuple ``parse`` would, or ``None`` whenever a value needs anything but the
    common case (wrong type, non-finite number, out-of-range timestamp, a NOT NULL column
    missing, ...); ``parse`` then runs the general rules, which give the row or the reject. So
    it changes speed only: one generated function per table instead of per-value calls.
    """
    if ignore_case:
        return None
    namespace: dict[str, Any] = {"_follow": _follow, "_EPOCH": EPOCH, "_timedelta": timedelta}
    body = ["def _fast(record):", "    get = record.get", "    try:"]
    # Per column, the common case is tested first: a value of the column's own JSON type.
    for index, column in enumerate(columns):
        path = paths[index] if paths is not None else (column.name,)
        if len(path) == 1 and isinstance(path[0], str):
            body.append(f"        v = get({path[0]!r})")
        else:
            namespace[f"_path{index}"] = path
            body.append(f"        v = _follow(record, _path{index})")
        missing = f"c{index} = None" if column.nullable else "return None"
        kind = column.data_type.lower()
        if kind in _TEXT_TYPES:
            limit = column.max_length
            cut = f"v if len(v) <= {limit} else v[:{limit}]" if limit else "v"
            body.append(f"        if v.__class__ is str and v.strip(): c{index} = {cut}")
            body.append(f"        elif v is None or v.__class__ is str: {missing}")  # missing or blank
        elif kind in _INTEGER_TYPES:
            body.append(f"        if v.__class__ is int: c{index} = v")
            body.append(f"        elif v is None: {missing}")
            body.append(f"        elif v.__class__ is str and v.isdigit() and v.isascii(): c{index} = int(v)")
            if column.nullable:
                body.append(f"        elif v == '': c{index} = None")
        elif kind in _FLOAT_TYPES:
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
            return None
        body.append("        else: return None")
    body.append("    except Exception:")
    body.append("        return None")
    body.append(f"    return ({''.join(f'c{i}, ' for i in range(len(columns)))})")
    exec("\n".join(body), namespace)
    return namespace["_fast"]
