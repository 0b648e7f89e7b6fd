"""Redshift JSONPaths files: parsing the paths, and following one through a JSON record."""

from __future__ import annotations

import json
import re
from typing import Any

from sparkify.record_values import Column, FormatError

_PATH_TOKEN = re.compile(r"""\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\[\s*(\d+)\s*\]|\.([A-Za-z_][\w]*)""")


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



def follow(record: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        if isinstance(key, int):
            record = record[key] if isinstance(record, list) and key < len(record) else None
        else:
            record = record.get(key) if isinstance(record, dict) else None
        if record is None:
            return None
    return record
