"""Which JSON keys the records of a staged object carried, and whether the object drifted.

Redshift's COPY ignores keys its mapping doesn't know and loads NULL for mapped keys that are
missing, so a producer renaming ``userId`` to ``userID`` stages every record with a NULL user and
no error at all. Staging therefore counts, per object, how many records carried each mapped key
(present, even with a null value) and which keys the mapping doesn't know, and refuses an object
from which an expected key is absent altogether.

A key is what the JSON format matches, as ``sparkify.records`` matches it: for ``'auto'`` the
column's name exactly, for ``'auto ignorecase'`` in any case, for a JSONPaths file the top-level
key its path starts with (a path into an array record, ``$[0]``, has none and is not counted).

The parser only counts the records' key tuples (``RecordParser.take_shapes``), the common
complete record in a single counter: records of one producer share a few shapes, so turning
shapes into per-key counts happens once per object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

# An object with more records than this, from which an expected key is absent in every record,
# fails to stage; a smaller one (a song file holds one record) only warns.
DRIFT_MIN_RECORDS = 10
SHOWN_KEYS = 10


@dataclass(frozen=True)
class KeyMap:
    """The top-level JSON key each column is read from."""

    keys: dict[str, str]  # column -> JSON key, folded to lower case when fold_case
    fold_case: bool = False

    @classmethod
    def for_format(cls, columns: Sequence[str], paths: Sequence[tuple] | None, ignore_case: bool) -> KeyMap:
        if paths is None:
            return cls({column: column.lower() if ignore_case else column for column in columns}, ignore_case)
        return cls({column: path[0] for column, path in zip(columns, paths) if isinstance(path[0], str)})

    def allows(self, column: str, allowed: frozenset[str]) -> bool:
        """Whether ``allowed`` (lower-case keys or column names) lets this column's key be absent."""
        return column.lower() in allowed or self.keys.get(column, column).lower() in allowed

    def counts(self, shapes: dict[tuple, int]) -> KeyCounts:
        """Per-key counts from the object's record shapes (key tuple -> records)."""
        known = {key: column for column, key in self.keys.items()}
        present = dict.fromkeys(self.keys, 0)
        unknown: dict[str, int] = {}
        records = 0
        for shape, count in shapes.items():
            records += count
            seen = set()
            for key in shape:
                matched = key.lower() if self.fold_case else key
                if matched in seen:
                    continue  # 'auto ignorecase': two spellings of one key in a record count once
                seen.add(matched)
                column = known.get(matched)
                if column is not None:
                    present[column] += count
                else:
                    unknown[key] = unknown.get(key, 0) + count
        return KeyCounts(records, present, unknown)


@dataclass
class KeyCounts:
    """Of an object's JSON object records: how many carried each mapped key, and which others."""

    records: int = 0
    present: dict[str, int] = field(default_factory=dict)  # column -> records carrying its key
    unknown: dict[str, int] = field(default_factory=dict)  # key the mapping doesn't know -> records


@dataclass
class Drift:
    """What an object's key counts say: columns whose key no record carried (``absent``: fail;
    ``absent_allowed`` and ``absent_few``: warn), columns whose key some records lacked."""

    min_records: int = DRIFT_MIN_RECORDS
    absent: list[str] = field(default_factory=list)
    absent_allowed: list[str] = field(default_factory=list)
    absent_few: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)

    @property
    def fails(self) -> bool:
        return bool(self.absent)


def parse_allowed(value: str | Iterable[str] | None) -> frozenset[str]:
    """Keys or column names allowed to be absent, from a list or comma-separated text; any case."""
    if not value:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(item.strip().lower() for item in items if item and item.strip())


def assess(counts: KeyCounts, key_map: KeyMap, allowed: frozenset[str],
           min_records: int = DRIFT_MIN_RECORDS) -> Drift:
    drift = Drift(min_records)
    if not counts.records:
        return drift
    for column, present in counts.present.items():
        if present == counts.records:
            continue
        if present:
            drift.partial.append(column)
        elif key_map.allows(column, allowed):
            drift.absent_allowed.append(column)
        elif counts.records <= min_records:
            drift.absent_few.append(column)
        else:
            drift.absent.append(column)
    return drift


def _key(key_map: KeyMap, column: str) -> str:
    key = key_map.keys[column]
    return repr(key) if key == column else f"{key!r} (column {column})"


def _unknown(counts: KeyCounts) -> str:
    ranked = sorted(counts.unknown.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{key!r} in {count:,} of {counts.records:,} records" for key, count in ranked[:SHOWN_KEYS])
    return shown + (f" and {len(ranked) - SHOWN_KEYS} more" if len(ranked) > SHOWN_KEYS else "")


def drift_error(url: str, counts: KeyCounts, drift: Drift, key_map: KeyMap) -> str:
    """The error of an object that drifted: the file, the absent keys, the unknown keys."""
    absent = ", ".join(_key(key_map, column) for column in drift.absent)
    unknown = f"unknown keys appeared: {_unknown(counts)}" if counts.unknown else "no unknown key appeared"
    return (f"{url}: schema drift: expected key {absent} is absent from all {counts.records:,} records; {unknown}. "
            "Nothing from this object was staged. If the key may legitimately be absent, list it in the "
            "allow_absent_keys param")


def drift_warnings(counts: KeyCounts, drift: Drift, key_map: KeyMap) -> list[str]:
    """What the log says of an object that stages: keys absent from some or all of its records, unknown keys."""
    lines = []
    for column in drift.partial:
        absent = counts.records - counts.present[column]
        lines.append(f"expected key {_key(key_map, column)} is absent from {absent:,} of {counts.records:,} "
                     f"records ({absent / counts.records:.1%}); they stage NULL")
    for column in drift.absent_allowed:
        lines.append(f"expected key {_key(key_map, column)} is absent from all {counts.records:,} records "
                     "(allowed by allow_absent_keys); they stage NULL")
    for column in drift.absent_few:
        lines.append(f"expected key {_key(key_map, column)} is absent from all {counts.records:,} records "
                     f"(too few to fail: drift fails objects of more than {drift.min_records} records)")
    if counts.unknown:
        lines.append(f"unknown keys, not staged: {_unknown(counts)}")
    return lines
