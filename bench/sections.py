"""The six measurements (staging, small objects, incremental cost, memory, parse time, end to end),
each compared side by side with its alternative in one run.

Every timed call runs in a fresh worker process (``bench.worker``); repetitions of the things
compared are interleaved (A, B, C, A, B, C, ...) so that background load hits them alike, and
ratios are taken per repetition (paired) before the median.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from bench import data, e2e, env
from bench.config import Config, code_dir
from bench.stats import Figure, summary
from bench.worker import EVENT_TABLE_COLUMNS

log = logging.getLogger("bench")

EVENTS_BUCKET = "bench-events"
SONGS_BUCKET = "bench-songs"
INCR_BUCKET = "bench-incr"
STAGE_DB = "bench_stage"
INCR_FULL_DB = "bench_incr_full"
INCR_EMPTY_DB = "bench_incr_empty"
# Section 3's late-data runs: late events for this many earlier hours, a few per hour.
LATE_HOURS = (1, 6, 24)
LATE_EVENTS_PER_HOUR = 3
MB = 1024.0  # ru_maxrss is in KiB on Linux
EMPTY_DAG = '''"""An empty DAG: the parse-time baseline."""
from airflow.sdk import DAG

with DAG("bench_empty", schedule=None):
    pass
'''


def paired(numerators: list[float], denominators: list[float]) -> dict[str, Any]:
    return summary(n / d for n, d in zip(numerators, denominators))


def _values(runs: list[dict], key: str) -> list[float]:
    return [run[key] for run in runs]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Bench:
    def __init__(self, cfg: Config, stack, log_dir: Path):
        self.cfg = cfg
        self.stack = stack
        self.log_dir = log_dir
        self.cpu = env.ServerCPU(stack)
        self.client = env.s3_client(stack)
        self.figures: list[Figure] = []
        self.details: dict[str, Any] = {}
        self._migrated = False

    # ------------------------------------------------------------------ helpers

    def worker(self, job: str, args: dict, extra_env: dict[str, str] | None = None, timeout: float = 3600) -> dict:
        return env.run_worker(job, args, env=extra_env, log_dir=self.log_dir, timeout=timeout, cpu=self.cpu)

    @property
    def alt(self) -> dict[str, str] | None:
        """BENCH_ALT_CODE_DIR: a patched copy of the code (plugins/, include/) whose staging is
        measured as well, interleaved with ours (an A/B of a proposed change in one run)."""
        alt = os.environ.get("BENCH_ALT_CODE_DIR")
        return {"BENCH_PLUGINS_DIR": str(Path(alt).absolute() / "plugins")} if alt else None

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def _migrate(self) -> None:
        if not self._migrated:
            started = time.monotonic()
            self.stack.migrate_airflow()
            self._migrated = True
            log.info("airflow metadata DB migrated in %.0f s", time.monotonic() - started)

    def _reset_staging(self, tables: tuple[str, ...]) -> None:
        with env.connect(self.stack, STAGE_DB) as conn:
            conn.execute(f"TRUNCATE {', '.join(tables)}, stage_load_ledger, stage_key_presence, stage_rejects")
        env.checkpoint(self.stack)

    def _count(self, dbname: str, sql: str) -> int:
        with env.connect(self.stack, dbname) as conn:
            return conn.execute(sql).fetchone()[0]

    # ------------------------------------------------------------------ 5. parse time

    def parse(self) -> None:
        cfg = self.cfg
        empty_dir = self.stack.state_dir / "bench_empty_dags"
        empty_dir.mkdir(exist_ok=True)
        (empty_dir / "empty_dag.py").write_text(EMPTY_DAG)
        folders = {"dags": Path(os.environ.get("BENCH_DAGS_DIR") or code_dir() / "dags"), "empty": empty_dir}
        runs: dict[str, list[dict]] = {name: [] for name in folders}
        for _ in range(cfg.parse_repeat):
            for name, folder in folders.items():
                result = self.worker("parse", {"folder": str(folder)})
                if result["import_errors"]:
                    raise RuntimeError(f"DagBag({folder}) import errors: {result['import_errors']}")
                runs[name].append(result)
        section = "5. DAG parse time"
        # (a) the DagBag call alone, Airflow already imported: what the dag-processor pays per file
        #     (it forks from a process that has Airflow loaded);
        # (b) the whole fresh process (interpreter + Airflow import + DagBag), e.g. `airflow dags list`.
        for key, label in (("seconds", "DagBag() call"), ("process_wall_s", "fresh process incl. Airflow import")):
            dags, empty = (summary(_values(runs[n], key)) for n in ("dags", "empty"))
            self.add(Figure.of(section, f"{label}: dags/ ({', '.join(runs['dags'][0]['dags'])})", dags, "s"))
            self.add(Figure.of(section, f"{label}: one empty DAG file", empty, "s"))
            self.add(Figure.of(section, f"{label}: dags/ / empty DAG", paired(_values(runs["dags"], key),
                                                                             _values(runs["empty"], key)),
                               "x", target="<= 1.5"))
        self.details["parse"] = {"dags": runs["dags"], "empty": runs["empty"]}

    # ------------------------------------------------------------------ 1. staging events + 4. memory

    def _events_data(self) -> dict[str, Any]:
        cfg = self.cfg
        folder = data.dataset(cfg.data_dir, "events", days=1, events_per_day=cfg.events_big, songs=300, users=2000)
        big = data.event_file(folder)
        small = data.head_lines(big, cfg.events_small, folder / f"events-head-{cfg.events_small}.json")
        files = {data.event_key(): big, f"bench/events-{cfg.events_small}.json": small,
                 "log_json_path.json": folder / "log_json_path.json"}
        s3tosql_key = data.event_key()
        if cfg.s3tosql_rows < cfg.events_big:
            prefix = data.head_lines(big, cfg.s3tosql_rows, folder / f"events-head-{cfg.s3tosql_rows}.json")
            s3tosql_key = f"bench/events-{cfg.s3tosql_rows}.json"
            files[s3tosql_key] = prefix
        started = time.monotonic()
        data.upload(self.client, EVENTS_BUCKET, files)
        log.info("uploaded %d event objects (%.0f MB) in %.0f s", len(files),
                 sum(p.stat().st_size for p in files.values()) / 1e6, time.monotonic() - started)
        csv = data.events_csv(big, data.event_key(), folder / "events.csv")
        env.create_database(self.stack, STAGE_DB)
        env.create_tables(self.stack, STAGE_DB)
        return {"folder": folder, "big": big, "small": small, "csv": csv, "s3tosql_key": s3tosql_key,
                "small_key": f"bench/events-{cfg.events_small}.json", "bytes": big.stat().st_size}

    def stage(self) -> None:
        cfg = self.cfg
        ev = self._events_data()
        self.details["events_data"] = {"file_bytes": ev["bytes"], "events": cfg.events_big}
        extra = {**env.warehouse_env(self.stack, STAGE_DB), **env.bucket_env(EVENTS_BUCKET)}
        ours_args = {"table": "staging_events", "key": data.event_key(),
                     "json_format": f"s3://{EVENTS_BUCKET}/log_json_path.json", "run_id": "bench_stage_events"}
        jobs: dict[str, tuple[str, dict, int]] = {
            "raw": ("raw_copy", {"table": "staging_events", "columns": EVENT_TABLE_COLUMNS, "csv": str(ev["csv"])},
                    cfg.events_big),
            "ours": ("stage_ours", ours_args, cfg.events_big),
            "s3tosql": ("s3_to_sql", {"table": "staging_events", "key": ev["s3tosql_key"], "run_id": "bench"},
                        cfg.s3tosql_rows),
        }
        if self.alt:
            jobs["alt"] = ("stage_ours", ours_args, cfg.events_big)
        runs: dict[str, list[dict]] = {name: [] for name in jobs}
        for rep in range(cfg.repeat):
            for name, (job, args, rows) in jobs.items():
                self._reset_staging(("staging_events",))
                result = self.worker(job, args, {**extra, **self.alt} if name == "alt" else extra)
                result["rows_in_table"] = self._count(STAGE_DB, "SELECT count(*) FROM staging_events")
                if result["rows_in_table"] != rows:
                    raise RuntimeError(f"{name}: {result['rows_in_table']} rows staged, expected {rows}")
                runs[name].append(result)
                log.info("stage %-8s rep %d: %.2f s, peak RSS %.0f MB", name, rep + 1, result["seconds"],
                         result["rss_peak_kb"] / MB)
        if cfg.profile:  # one more, untimed run under pyinstrument (BENCH_PROFILE=1)
            self._reset_staging(("staging_events",))
            self.worker("stage_ours", {**ours_args, "profile": str(self.log_dir / "profile-stage-events")}, extra)
        # 4. memory: the same staging of a 10x smaller object (fresh processes as well)
        small_runs = []
        for _ in range(cfg.repeat):
            self._reset_staging(("staging_events",))
            small_runs.append(self.worker("stage_ours", {**ours_args, "key": ev["small_key"]}, extra))
        self._reset_staging(("staging_events",))

        scale = cfg.events_big / cfg.s3tosql_rows  # 1.0 unless measured on a prefix
        times = {name: _values(r, "seconds") for name, r in runs.items()}
        times["s3tosql"] = [t * scale for t in times["s3tosql"]]
        section = "1. Staging events"
        n = f"{cfg.events_big:,}"
        labels = {
            "ours": f"ours: StageToRedshiftOperator, PostgreSQL path ({n} events)",
            "s3tosql": f"amazon S3ToSqlOperator, JSON-lines parser ({n} events"
                       + (f", measured on {cfg.s3tosql_rows:,} and scaled linearly)" if scale != 1 else ")"),
            "raw": f"raw COPY FROM STDIN, CSV from local disk ({n} rows)",
        }
        for name in ("ours", "s3tosql", "raw"):
            t = summary(times[name])
            note = self._cpu_note(runs[name])
            if name == "s3tosql":
                note += (f"; download {statistics.median(_values(runs[name], 'download_s')) * scale:.1f} s"
                         f" + insert_rows {statistics.median(_values(runs[name], 'insert_s')) * scale:.1f} s")
            self.add(Figure.of(section, labels[name] + ": time", t, "s", note=note))
            self.add(Figure(section, labels[name].split(":")[0].split(" (")[0] + ": rows/s",
                            cfg.events_big / t["median"], "rows/s", cfg.events_big / t["max"], cfg.events_big / t["min"],
                            t["n"]))
            rss = summary(v / MB for v in _values(runs[name], "rss_peak_kb"))
            self.add(Figure.of(section, labels[name].split(":")[0].split(" (")[0] + ": peak RSS", rss, "MB"))
        self.add(Figure.of(section, "ours / raw COPY (time)", paired(times["ours"], times["raw"]), "x", target="<= 1.5"))
        insert_only = statistics.median(_values(runs['s3tosql'], 'insert_s')) * scale / statistics.median(times['ours'])
        self.add(Figure.of(section, "S3ToSqlOperator / ours (time, i.e. our speed-up)",
                           paired(times["s3tosql"], times["ours"]), "x", target=">= 6",
                           note=f"insert-only (excl. download): {insert_only:.2f}x"))

        section = "4. Bounded memory"
        big_rss = _values(runs["ours"], "rss_peak_kb")
        small_rss = _values(small_runs, "rss_peak_kb")
        self.add(Figure.of(section, f"staging peak RSS, {cfg.events_big:,} events", summary(v / MB for v in big_rss), "MB",
                           note=self._rss_note(runs["ours"])))
        self.add(Figure.of(section, f"staging peak RSS, {cfg.events_small:,} events", summary(v / MB for v in small_rss),
                           "MB", note=self._rss_note(small_runs)))
        self.add(Figure.of(section, f"peak RSS {cfg.events_big:,} / {cfg.events_small:,} events",
                           paired(big_rss, small_rss), "x", target="<= 1.2"))
        if self.alt:
            section = "A/B. Patched copy (BENCH_ALT_CODE_DIR), staging events"
            self.add(Figure.of(section, f"patched: StageToRedshiftOperator ({n} events): time", summary(times["alt"]),
                               "s", note=self._cpu_note(runs["alt"])))
            self.add(Figure.of(section, "patched / ours (time)", paired(times["alt"], times["ours"]), "x"))
            self.add(Figure.of(section, "patched / raw COPY (time)", paired(times["alt"], times["raw"]), "x",
                               target="<= 1.5"))
            self.add(Figure.of(section, "S3ToSqlOperator / patched (time)", paired(times["s3tosql"], times["alt"]), "x",
                               target=">= 6"))
        self.details["stage"] = {**runs, "ours_small": small_runs, "s3tosql_scale": scale}

    @staticmethod
    def _cpu_note(runs: list[dict]) -> str:
        med = lambda key: statistics.median(_values(runs, key))  # noqa: E731
        return (f"CPU s: client {med('cpu_s'):.1f}, postgres {med('postgres_cpu_s'):.1f}, "
                f"moto {med('moto_cpu_s'):.1f}")

    @staticmethod
    def _rss_note(runs: list[dict]) -> str:
        before = statistics.median(_values(runs, "rss_before_kb")) / MB
        added = statistics.median([r["rss_peak_kb"] - r["rss_before_kb"] for r in runs]) / MB
        return f"{before:.0f} MB after imports, +{added:.0f} MB during execute"

    # ------------------------------------------------------------------ 2. many small objects

    def songs(self) -> None:
        cfg = self.cfg
        folder = data.dataset(cfg.data_dir, "songs", songs=cfg.song_files, days=1, events_per_day=0, users=60)
        data.upload_dataset(self.client, SONGS_BUCKET, folder, parts=("song_data",))
        env.create_database(self.stack, STAGE_DB) if not self._db_exists(STAGE_DB) else None
        env.create_tables(self.stack, STAGE_DB)
        extra = {**env.warehouse_env(self.stack, STAGE_DB), **env.bucket_env(SONGS_BUCKET)}
        ours_args = {"table": "staging_songs", "key": "song_data/", "json_format": "auto", "run_id": "bench_stage_songs"}
        runs: dict[str, list[dict]] = {"ours": [], "serial": [], "parallel": [], "alt": []}
        for rep in range(cfg.repeat):
            self._reset_staging(("staging_songs",))
            runs["serial"].append(self.worker("get_loop", {"prefix": "song_data/", "threads": 1}, extra))
            result = self.worker("stage_ours", ours_args, extra)
            result["rows_in_table"] = self._count(STAGE_DB, "SELECT count(*) FROM staging_songs")
            if result["objects"] != cfg.song_files or result["rows_in_table"] != cfg.song_files:
                raise RuntimeError(f"stage_songs staged {result['objects']} objects / {result['rows_in_table']} rows, "
                                   f"expected {cfg.song_files}")
            runs["ours"].append(result)
            if self.alt:
                self._reset_staging(("staging_songs",))
                runs["alt"].append(self.worker("stage_ours", ours_args, {**extra, **self.alt}))
            if rep < cfg.songs_reference_repeat:
                runs["parallel"].append(self.worker("get_loop", {"prefix": "song_data/", "threads": 16}, extra))
            log.info("songs rep %d: ours %.1f s, serial GET loop %.1f s", rep + 1, result["seconds"],
                     runs["serial"][-1]["seconds"])
        if cfg.profile:
            self._reset_staging(("staging_songs",))
            self.worker("stage_ours", {**ours_args, "profile": str(self.log_dir / "profile-stage-songs")}, extra)
        self._reset_staging(("staging_songs",))
        objects = cfg.song_files
        rate = {name: [objects / s for s in _values(r, "seconds")] for name, r in runs.items() if r}
        section = "2. Many small objects"
        self.add(Figure.of(section, f"ours: stage_songs, {objects:,} song files", summary(rate["ours"]), "objects/s",
                           note=self._cpu_note(runs["ours"]) + "; includes listing and ledger"))
        self.add(Figure.of(section, "serial boto3 GET loop, same keys", summary(rate["serial"]), "objects/s",
                           note=self._cpu_note(runs["serial"])))
        self.add(Figure.of(section, "ours / serial GET loop (objects/s)", paired(rate["ours"], rate["serial"]), "x",
                           target=">= 4"))
        self.add(Figure.of(section, "reference: 16-thread boto3 GET loop (the endpoint's ceiling)",
                           summary(rate["parallel"]), "objects/s", note=self._cpu_note(runs["parallel"])))
        self.add(Figure(section, "reference / serial GET loop: the most any client reaches here",
                        statistics.median(rate["parallel"]) / statistics.median(rate["serial"]), "x"))
        moto_ms = statistics.median(r["moto_cpu_s"] / objects * 1000 for r in runs["serial"])
        self.add(Figure(section, "moto server CPU per GET (serial loop)", moto_ms, "ms",
                        note=f"caps any client at ~{1000 / moto_ms:,.0f} objects/s with a whole core"))
        # With no network latency the serial loop is busy on CPU (its own and moto's) nearly all
        # the time, so no concurrency can beat it by more than the machine's cores allow, nor
        # by more than moto allows: its GIL keeps it to one core however many requests wait.
        cores = os.cpu_count() or 1
        wall_ms = statistics.median(r["seconds"] / objects * 1000 for r in runs["serial"])
        cpu_ms = statistics.median((r["cpu_s"] + r["moto_cpu_s"]) / objects * 1000 for r in runs["serial"])
        self.add(Figure(section, "bound on any client / serial GET loop on this endpoint",
                        min(cores * wall_ms / cpu_ms, wall_ms / moto_ms), "x",
                        note=f"the lower of {cores} cores x {wall_ms:.2f} ms wall per GET of the serial loop / "
                             f"{cpu_ms:.2f} ms CPU per GET (client + moto) = {cores * wall_ms / cpu_ms:.2f}x and "
                             f"{wall_ms:.2f} ms / {moto_ms:.2f} ms of moto's one core per GET = {wall_ms / moto_ms:.2f}x"))
        if cfg.s3_latency_ms:
            self._songs_with_latency(folder, ours_args, extra)
        if self.alt:
            section = "A/B. Patched copy (BENCH_ALT_CODE_DIR), many small objects"
            self.add(Figure.of(section, "patched: stage_songs", summary(rate["alt"]), "objects/s",
                               note=self._cpu_note(runs["alt"])))
            self.add(Figure.of(section, "patched / serial GET loop", paired(rate["alt"], rate["serial"]), "x",
                               target=">= 4"))
        self.details["songs"] = runs

    def _songs_with_latency(self, folder: Path, ours_args: dict, extra: dict[str, str]) -> None:
        """Section 2 again through ``bench.latency_proxy``: every request waits BENCH_S3_LATENCY_MS,
        as against real S3, on the largest top-level folder of the song files (the serial loop is slow)."""
        cfg = self.cfg
        counts = {path.name: sum(1 for item in path.rglob("*") if item.is_file())
                  for path in (folder / "song_data").iterdir() if path.is_dir()}
        name, objects = max(counts.items(), key=lambda item: (item[1], item[0]))
        prefix = f"song_data/{name}/"
        runs: dict[str, list[dict]] = {"ours": [], "serial": []}
        with env.latency_proxy(self.stack.s3_endpoint, cfg.s3_latency_ms) as endpoint:
            slow = {**extra, **env.s3_endpoint_env(self.stack, endpoint)}
            for rep in range(cfg.repeat):
                self._reset_staging(("staging_songs",))
                runs["serial"].append(self.worker("get_loop", {"prefix": prefix, "threads": 1}, slow))
                result = self.worker("stage_ours", {**ours_args, "key": prefix}, slow)
                staged = self._count(STAGE_DB, "SELECT count(*) FROM staging_songs")
                if result["objects"] != objects or staged != objects:
                    raise RuntimeError(f"stage_songs via the latency proxy staged {result['objects']} objects / "
                                       f"{staged} rows, expected {objects}")
                runs["ours"].append(result)
                log.info("songs with %g ms latency, rep %d: ours %.1f s, serial GET loop %.1f s", cfg.s3_latency_ms,
                         rep + 1, result["seconds"], runs["serial"][-1]["seconds"])
        self._reset_staging(("staging_songs",))
        rate = {name: [objects / s for s in _values(r, "seconds")] for name, r in runs.items()}
        section = f"2b. Many small objects, {cfg.s3_latency_ms:g} ms added to every S3 request"
        self.add(Figure.of(section, f"ours: stage_songs, {objects:,} song files ({prefix})", summary(rate["ours"]),
                           "objects/s", note=self._cpu_note(runs["ours"]) + "; includes listing and ledger"))
        self.add(Figure.of(section, "serial boto3 GET loop, same keys", summary(rate["serial"]), "objects/s",
                           note=self._cpu_note(runs["serial"])))
        self.add(Figure.of(section, "ours / serial GET loop (objects/s)", paired(rate["ours"], rate["serial"]), "x",
                           target=">= 4", note="the target's comparison where latency, not CPU, bounds a GET"))
        self.details["songs_latency"] = {"prefix": prefix, "objects": objects, "latency_ms": cfg.s3_latency_ms, **runs}

    def _db_exists(self, dbname: str) -> bool:
        with env.connect(self.stack, "postgres") as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None

    # ------------------------------------------------------------------ 3. incremental cost

    def incremental(self) -> None:
        cfg = self.cfg
        days = cfg.incr_days
        folder = data.dataset(cfg.data_dir, "incr", days=days + 1, events_per_day=cfg.incr_events_per_day,
                              songs=cfg.incr_songs, users=cfg.incr_users)
        data.upload_dataset(self.client, INCR_BUCKET, folder)
        self._migrate()
        start = datetime(2018, 11, 1)
        day = start + timedelta(days=days)  # the measured day, after the 30 loaded ones
        warehouses = {}
        for name, db in (("full", INCR_FULL_DB), ("empty", INCR_EMPTY_DB)):
            env.create_database(self.stack, db)
            warehouses[name] = {**env.warehouse_env(self.stack, db), **env.bucket_env(INCR_BUCKET)}
        # One manual run over the 30 days fills it (its quality checks skipped: setup, not measured).
        fill = self.worker("dag_window", {"start": _iso(start), "end": _iso(day), "skip_checks": True},
                           warehouses["full"])
        log.info("loaded %d days into the full warehouse in %.0f s", days, fill["seconds"])
        # Warm-up hour on both: stages the measured day's file (and the songs), so every measured run
        # finds it already staged and skips it, as an hourly run does after the day's first hour.
        warmup = {name: self.worker("dag_window", {"start": _iso(day), "end": _iso(day + timedelta(hours=1))}, e)
                  for name, e in warehouses.items()}
        sizes = {name: {table: self._count(db, f"SELECT count(*) FROM {table}")
                        for table in ("staging_events", "songplays", "loaded_hours", "users")}
                 for name, db in (("full", INCR_FULL_DB), ("empty", INCR_EMPTY_DB))}
        runs: dict[str, list[dict]] = {"full": [], "empty": []}
        for rep in range(cfg.repeat):
            hour = day + timedelta(hours=12 + rep)
            order = ("full", "empty") if rep % 2 == 0 else ("empty", "full")
            for name in order:
                result = self.worker("dag_window", {"start": _iso(hour), "end": _iso(hour + timedelta(hours=1))},
                                     warehouses[name])
                result["hour"] = _iso(hour)
                runs[name].append(result)
            log.info("hour %s: full %.1f s, empty %.1f s", _iso(hour), runs["full"][-1]["seconds"],
                     runs["empty"][-1]["seconds"])
        section = "3. Incremental cost"
        held = f"{sizes['full']['staging_events']:,} staged events, {sizes['full']['songplays']:,} songplays"
        for name in ("full", "empty"):
            label = f"one hourly run (dag.test), warehouse with {days} days ({held})" if name == "full" else \
                "same hour, empty warehouse (same day file staged)"
            self.add(Figure.of(section, label, summary(_values(runs[name], "seconds")), "s",
                               note=f"task time {statistics.median(_values(runs[name], 'task_seconds')):.2f} s"))
        self.add(Figure.of(section, "full / empty: run time", paired(_values(runs["full"], "seconds"),
                                                                      _values(runs["empty"], "seconds")),
                           "x", target="<= 1.25"))
        self.add(Figure.of(section, "full / empty: sum of task durations",
                           paired(_values(runs["full"], "task_seconds"), _values(runs["empty"], "task_seconds")),
                           "x", target="<= 1.25", note="the warehouse-dependent part, without dag.test's own overhead"))
        per_task = {}
        for task in runs["full"][0]["tasks"]:
            full = statistics.median(r["tasks"][task]["duration_s"] or 0 for r in runs["full"])
            empty = statistics.median(r["tasks"][task]["duration_s"] or 0 for r in runs["empty"])
            per_task[task] = {"full_s": full, "empty_s": empty, "ratio": full / empty if empty else None}
        # dag.test runs tasks one by one in one process: whichever of stage_events / stage_songs runs
        # first pays the S3 client set-up, so compare the two together.
        staging = [t for t in ("stage_events", "stage_songs") if t in per_task]
        combined = {t: v for t, v in per_task.items() if t not in staging}
        if staging:
            full = statistics.median(sum(r["tasks"][t]["duration_s"] or 0 for t in staging) for r in runs["full"])
            empty = statistics.median(sum(r["tasks"][t]["duration_s"] or 0 for t in staging) for r in runs["empty"])
            combined[" + ".join(staging)] = {"full_s": full, "empty_s": empty, "ratio": full / empty if empty else None}
        growth = sorted(combined.items(), key=lambda kv: kv[1]["empty_s"] - kv[1]["full_s"])
        self.add(Figure(section, "tasks growing most (full - empty, median s)",
                        growth[0][1]["full_s"] - growth[0][1]["empty_s"], "s",
                        note="; ".join(f"{task} {v['empty_s']:.2f} -> {v['full_s']:.2f} s" for task, v in growth[:3])))
        late = self._late_events(folder, day, warehouses["full"], statistics.median(_values(runs["full"], "seconds")))
        self.details["incremental"] = {"fill": fill, "warmup": warmup, "sizes": sizes, "runs": runs, "per_task": per_task,
                                       "late_events": late}

    def _late_events(self, folder: Path, day: datetime, warehouse: dict[str, str], one_hour: float) -> dict:
        """Hourly runs on the full warehouse whose day file brings late events for k earlier,
        already loaded hours (the day before, misfiled in this day's file, as real logs do),
        against k times one hour's run. Each step adds new events for its k hours, so its
        change touches exactly those hours."""
        day_key = f"log_data/{day:%Y}/{day:%m}/{day:%Y-%m-%d}-events.json"
        before = day - timedelta(days=1)
        earlier = read_json_lines(folder / f"log_data/{before:%Y}/{before:%m}/{before:%Y-%m-%d}-events.json")
        text = (folder / day_key).read_text(encoding="utf-8")
        section = "3. Incremental cost"
        results = {}
        for step, k in enumerate(LATE_HOURS, start=1):
            late = []
            for offset in range(k):
                hour_start = before + timedelta(hours=offset)
                plays = [e for e in earlier if e["page"] == "NextSong" and e["userId"]
                         and hour_start <= _epoch(e["ts"]) < hour_start + timedelta(hours=1)][:LATE_EVENTS_PER_HOUR]
                late += [{**e, "itemInSession": e["itemInSession"] + 10_000 * step} for e in plays]
            text += "".join(json.dumps(event, ensure_ascii=False) + "\n" for event in late)
            self.client.put_object(Bucket=INCR_BUCKET, Key=day_key, Body=text.encode("utf-8"))
            hour = day + timedelta(hours=20 + step)
            result = self.worker("dag_window", {"start": _iso(hour), "end": _iso(hour + timedelta(hours=1))}, warehouse)
            results[k] = {"seconds": result["seconds"], "late_events": len(late), "tasks": result["tasks"]}
            log.info("late events for %d earlier hours: %.1f s (one hour's run %.1f s)", k, result["seconds"], one_hour)
            self.add(Figure(section, f"hourly run bringing late events for {k} earlier hours", result["seconds"], "s",
                            note=f"{len(late)} late events; k x one hour's run = {k * one_hour:.1f} s; "
                                 f"ratio to one hour's run {result['seconds'] / one_hour:.2f}x"))
        return results


def read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _epoch(ms: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=ms)


SECTION_ORDER: dict[str, Callable[[Bench], None]] = {
    "parse": Bench.parse,
    "stage": Bench.stage,  # also measures 4. memory
    "songs": Bench.songs,
    "incremental": Bench.incremental,
    "e2e": e2e.run,
}
