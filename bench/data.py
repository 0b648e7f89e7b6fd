"""Benchmark datasets: generated once with scripts/sample_data.py, cached under bench/data/."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from bench.worker import EVENT_COLUMNS

log = logging.getLogger("bench")
EPOCH = datetime(1970, 1, 1)
START_DAY = date(2018, 11, 1)


def dataset(data_dir: Path, name: str, **knobs) -> Path:
    """A generated dataset folder for these knobs, reusing a complete earlier one."""
    from scripts.sample_data import generate

    knobs = {"seed": 42, "start_day": START_DAY, **knobs}
    tag = hashlib.sha1(json.dumps(knobs, sort_keys=True, default=str).encode()).hexdigest()[:10]
    folder = data_dir / f"{name}-{tag}"
    marker = folder / ".complete.json"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    counts = generate(folder, overwrite=True, **knobs)
    marker.write_text(json.dumps({"knobs": knobs, "counts": counts}, default=str) + "\n")
    log.info("generated %s in %.0f s: %s", folder.name, time.monotonic() - started, counts)
    return folder


def event_file(folder: Path, day: date = START_DAY) -> Path:
    return folder / "log_data" / f"{day:%Y}" / f"{day:%m}" / f"{day:%Y-%m-%d}-events.json"


def event_key(day: date = START_DAY) -> str:
    return f"log_data/{day:%Y}/{day:%m}/{day:%Y-%m-%d}-events.json"


def head_lines(source: Path, lines: int, target: Path) -> Path:
    """The first ``lines`` lines of ``source`` (cached)."""
    if target.exists():
        return target
    tmp = target.with_suffix(".tmp")
    with open(source, "rb") as src, open(tmp, "wb") as out:
        for number, line in enumerate(src):
            if number >= lines:
                break
            out.write(line)
    tmp.rename(target)
    return target


def events_csv(source: Path, source_key: str, target: Path) -> Path:
    """The rows our staging gives for ``source``, as CSV for COPY (cached): same columns and values."""
    import orjson

    if target.exists():
        return target
    started = time.monotonic()
    keys = [key for _, key in EVENT_COLUMNS]
    ts_index = keys.index("ts")
    tmp = target.with_suffix(".tmp")
    with open(source, "rb") as src, open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        for number, line in enumerate(src, start=1):
            if not line.strip():
                continue
            record = orjson.loads(line)
            row = [record.get(key) for key in keys]
            row = ["" if value is None else value for value in row]
            row[ts_index] = (EPOCH + timedelta(milliseconds=record["ts"])).isoformat(sep=" ")
            row.extend((source_key, number))
            writer.writerow(row)
    tmp.rename(target)
    log.info("wrote %s in %.0f s", target.name, time.monotonic() - started)
    return target


def upload(client, bucket: str, files: dict[str, Path], workers: int = 16) -> None:
    """Put ``{key: local file}`` into ``bucket`` (created if missing)."""
    from concurrent.futures import ThreadPoolExecutor

    from scripts.upload_data import MULTIPART_THRESHOLD, ensure_bucket

    ensure_bucket(client, bucket)

    def put(item: tuple[str, Path]) -> None:
        key, path = item
        if path.stat().st_size > MULTIPART_THRESHOLD:
            client.upload_file(str(path), bucket, key)
        else:
            with path.open("rb") as body:
                client.put_object(Bucket=bucket, Key=key, Body=body)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, files.items()))


def upload_dataset(client, bucket: str, folder: Path, parts=("song_data", "log_data", "log_json_path.json")) -> int:
    """Upload the given parts of a generated dataset under their own keys; returns the file count."""
    files = {}
    for part in parts:
        path = folder / part
        if path.is_file():
            files[part] = path
        elif path.is_dir():
            for item in sorted(path.rglob("*")):
                if item.is_file():
                    files[item.relative_to(folder).as_posix()] = item
    started = time.monotonic()
    upload(client, bucket, files)
    log.info("uploaded %d files of %s to s3://%s in %.0f s", len(files), folder.name, bucket, time.monotonic() - started)
    return len(files)
