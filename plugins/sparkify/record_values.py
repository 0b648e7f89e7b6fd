"""Converting one JSON value to a staging column's type, as Redshift's COPY converts text.

The rules follow ``COPY ... FORMAT AS JSON`` (see ``sparkify.records`` for the whole list):
``""`` and blank strings load as NULL, VARCHAR takes any value's JSON text truncated to the
column's length in bytes, numbers take only ASCII digit text, TIMESTAMP takes whole epoch
milliseconds. Each converter raises ``RecordError`` naming what it refused.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

EPOCH = datetime(1970, 1, 1)


class RecordError(ValueError):
    """One input record that can't be staged; ``field`` names the column at fault."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field


class NotOneValue(RecordError):
    """The bytes are not one complete JSON value: part of a record that spans lines, several
    records, or malformed JSON. ``sparkify.json_stream`` reads on to tell which."""


class FormatError(ValueError):
    """The JSON format (``'auto'`` or a JSONPaths file) doesn't fit the table."""


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    max_length: int | None = None
    nullable: bool = True



def blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _truncate_bytes(text: str, limit: int) -> str:
    """At most ``limit`` UTF-8 bytes of ``text``, cut on a character boundary."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def _to_text(max_length: int | None) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        # Redshift loads a number, a boolean or a nested object/array as its JSON text.
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, str):
            value = json.dumps(value)
        return _truncate_bytes(value, max_length) if max_length else value

    return convert


# The text COPY converts to a number: ASCII digits only (no other script's digits, no
# "1_000", no surrounding spaces), an optional sign; floats also take a fraction and an
# exponent. "nan" and "inf" are not numbers to Redshift (it can't load them).
_INTEGER_TEXT = re.compile(r"[-+]?[0-9]+", re.ASCII)
_FLOAT_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)
INTEGER_RANGES = {
    "smallint": (-(2 ** 15), 2 ** 15 - 1),
    "integer": (-(2 ** 31), 2 ** 31 - 1),
    "bigint": (-(2 ** 63), 2 ** 63 - 1),
}


def _to_int(kind: str) -> Callable[[Any], int]:
    """A JSON integer, or a string of one. Redshift converts the value's text, so a fraction
    ("3.0" included), an exponent or a boolean is an invalid digit to it (load error 1207),
    and a value outside the type's range overflows (1216): each rejects the record."""
    low, high = INTEGER_RANGES[kind]

    def convert(value: Any) -> int:
        if value.__class__ is str and _INTEGER_TEXT.fullmatch(value):
            number = int(value)
        elif value.__class__ is int:
            number = value
        else:
            raise ValueError(f"{_shown(value)} is not an integer")
        if not low <= number <= high:
            raise ValueError(f"{_shown(value)} is out of range for {kind}")
        return number

    return convert


def _to_float(kind: str) -> Callable[[Any], float]:
    """A JSON number, or a string of one (exponent forms included). Booleans, "nan", "inf"
    and numbers beyond the type's range are rejected, as Redshift rejects them."""
    # REAL is single precision: past its largest value, or so small it would become 0.
    largest, smallest = (3.4028234663852886e38, 1.401298464324817e-45) if kind == "real" else (math.inf, 0.0)

    def convert(value: Any) -> float:
        if value.__class__ is int or value.__class__ is float:
            number = float(value)
        elif value.__class__ is str and _FLOAT_TEXT.fullmatch(value):
            number = float(value)
        else:
            raise ValueError(f"{_shown(value)} is not a number")
        if not math.isfinite(number) or abs(number) > largest or (number and abs(number) < smallest):
            raise ValueError(f"{_shown(value)} is out of range for {kind}")
        return number

    return convert


def _to_epoch_millis(value: Any) -> datetime:
    """TIMEFORMAT 'epochmillisecs': whole milliseconds since 1970, as a JSON integer or a
    string of one. A fraction ("1541105830796.0" or .5) is not a count of milliseconds to
    COPY's epoch parser, so it rejects the record, like a fraction in an INTEGER column."""
    if value.__class__ is str and _INTEGER_TEXT.fullmatch(value):
        value = int(value)
    elif value.__class__ is not int:
        raise ValueError(f"{_shown(value)} is not epoch milliseconds (a whole number)")
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


INTEGER_TYPES = set(INTEGER_RANGES)
FLOAT_TYPES = {"real", "double precision"}
TEXT_TYPES = {"character varying", "text", "character", "varchar", "char"}


def converter(column: Column) -> Callable[[Any], Any]:
    kind = column.data_type.lower()
    if kind in TEXT_TYPES:
        return _to_text(column.max_length)
    if kind in INTEGER_TYPES:
        return _to_int(kind)
    if kind in FLOAT_TYPES:
        return _to_float(kind)
    if kind.startswith("timestamp"):
        return _to_epoch_millis
    if kind == "boolean":
        return _to_bool
    raise FormatError(f"column {column.name} has type {column.data_type}, which JSON staging doesn't support")
