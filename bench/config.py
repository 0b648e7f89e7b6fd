"""Knobs of the benchmark (environment variables) and the sizes they give.

The defaults are the full-size run that ``bench/results.md`` records. ``BENCH_SCALE`` shrinks every data size for a smoke run
(e.g. ``BENCH_SCALE=0.05 make bench``); ``BENCH_REPEAT`` sets the repetitions per figure.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
# "stage" runs sections 1 (staging a day of events) and 4 (bounded memory): 4 reuses 1's runs.
SECTIONS = ("parse", "stage", "songs", "incremental", "e2e")
ALIASES = {"memory": "stage", "events": "stage", "parse_time": "parse", "small": "songs", "end_to_end": "e2e"}


def code_dir() -> Path:
    """The project code measured: the working tree, or BENCH_CODE_DIR (a folder with dags/,
    plugins/ and include/, e.g. ``git archive HEAD dags plugins include | tar -x -C DIR``)."""
    return Path(os.environ.get("BENCH_CODE_DIR") or REPO).absolute()


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(float(raw)) if raw else default


def _scaled(value: int, scale: float, minimum: int) -> int:
    return max(minimum, int(round(value * scale)))


@dataclass
class Config:
    scale: float
    repeat: int
    sections: tuple[str, ...]
    data_dir: Path
    out_dir: Path
    keep_state: bool
    profile: bool
    # 1. staging events
    events_big: int
    events_small: int
    s3tosql_rows: int
    # 2. many small objects
    song_files: int
    songs_reference_repeat: int
    s3_latency_ms: float
    # 3. incremental cost
    incr_days: int
    incr_events_per_day: int
    incr_songs: int
    incr_users: int
    # 5. parse time
    parse_repeat: int
    # 6. end to end
    e2e_songs: int
    e2e_rounds: int
    e2e_events_per_day: int
    e2e_hours: int
    notes: list[str] = field(default_factory=list)

    @property
    def full_size(self) -> bool:
        return self.scale >= 1.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["data_dir"] = str(self.data_dir)
        data["out_dir"] = str(self.out_dir)
        return data


def load() -> Config:
    scale = _float("BENCH_SCALE", 1.0)
    if scale <= 0:
        raise SystemExit("BENCH_SCALE must be > 0")
    repeat = max(1, _int("BENCH_REPEAT", 3))
    only = os.environ.get("BENCH_ONLY", "").strip()
    sections = tuple(dict.fromkeys(ALIASES.get(s.strip(), s.strip()) for s in only.split(",") if s.strip())) if only else SECTIONS
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    data_dir = Path(os.environ.get("BENCH_DATA_DIR") or BENCH_DIR / "data").absolute()
    # Only a full-size run of every section writes the committed outputs by default.
    default_out = BENCH_DIR if scale >= 1.0 and set(sections) == set(SECTIONS) else data_dir / "smoke"
    out_dir = Path(os.environ.get("BENCH_OUT") or default_out).absolute()
    events_big = _scaled(_int("BENCH_EVENTS", 1_000_000), scale, 2_000)
    return Config(
        scale=scale,
        repeat=repeat,
        sections=sections,
        data_dir=data_dir,
        out_dir=out_dir,
        keep_state=os.environ.get("BENCH_KEEP", "") not in ("", "0"),
        profile=os.environ.get("BENCH_PROFILE", "") not in ("", "0"),
        events_big=events_big,
        events_small=max(1_000, events_big // 10),
        # BENCH_S3TOSQL_ROWS < events: measure S3ToSqlOperator on that prefix and scale linearly.
        s3tosql_rows=min(events_big, _scaled(_int("BENCH_S3TOSQL_ROWS", 1_000_000), scale, 1_000)),
        song_files=_scaled(_int("BENCH_SONG_FILES", 20_000), scale, 200),
        songs_reference_repeat=max(1, _int("BENCH_SONGS_REFERENCE_REPEAT", 1)),
        s3_latency_ms=max(0.0, _float("BENCH_S3_LATENCY_MS", 20.0)),
        incr_days=30,
        incr_events_per_day=_scaled(_int("BENCH_INCR_EVENTS_PER_DAY", 10_000), scale, 500),
        incr_songs=_scaled(_int("BENCH_INCR_SONGS", 1_000), scale, 100),
        incr_users=_scaled(1_000, scale, 60),
        parse_repeat=max(3, _int("BENCH_PARSE_REPEAT", 7)),
        e2e_songs=300,
        e2e_rounds=max(2, _int("BENCH_E2E_ROUNDS", 2)),
        e2e_events_per_day=3_000,
        e2e_hours=max(1, _int("BENCH_E2E_HOURS", 24)),
    )
