"""Upload a Sparkify dataset folder to S3 (or an S3-compatible endpoint).

    python -m scripts.upload_data --dir DIR --bucket BUCKET
        [--endpoint-url URL] [--prefix PREFIX] [--workers 16]

Every file under DIR (song_data/, log_data/, log_json_path.json) lands in the
bucket under the same relative key, optionally below PREFIX. The bucket is
created when missing. Credentials and region come from the usual AWS
environment variables; the endpoint from --endpoint-url or
SPARKIFY_S3_ENDPOINT (e.g. a local moto server).

Datasets are many small files, so uploads run on a thread pool sharing one
client (boto3 clients are thread-safe); big files go through the managed
multipart transfer instead of a single PUT.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

DEFAULT_WORKERS = 16
# Files above this size use upload_file (multipart, retried per part).
MULTIPART_THRESHOLD = 16 * 1024 * 1024
DATASET_FOLDERS = ("song_data", "log_data")


def _content_type(path: Path) -> str:
    return "application/json" if path.suffix == ".json" else "application/octet-stream"


def _key(prefix: str, relative: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{relative}" if prefix else relative


def dataset_files(directory: Path) -> list[Path]:
    """All files of the dataset under `directory`, sorted.

    Raises ValueError when `directory` does not look like the dataset.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory")
    if not any((directory / name).is_dir() for name in DATASET_FOLDERS):
        raise ValueError(
            f"{directory} does not look like a Sparkify dataset: expected "
            "song_data/ and/or log_data/ inside it (see scripts/sample_data.py)")
    return sorted(path for path in directory.rglob("*") if path.is_file())


def ensure_bucket(s3_client, bucket: str) -> None:
    """Create `bucket` unless it exists already."""
    try:
        s3_client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = s3_client.meta.region_name
    if region and region != "us-east-1":
        # Outside us-east-1, S3 wants the region spelled out.
        s3_client.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": region})
    else:
        s3_client.create_bucket(Bucket=bucket)


def upload_dir(directory, bucket: str, s3_client, prefix: str = "",
               workers: int = DEFAULT_WORKERS) -> tuple[int, int]:
    """Upload every file under `directory` to `bucket`; return (files, bytes).

    Keys are the paths relative to `directory` (with "/"), below `prefix`.
    The bucket is created if missing. The first failed upload raises once
    the pool has stopped.
    """
    directory = Path(directory)
    files = dataset_files(directory)
    ensure_bucket(s3_client, bucket)

    def upload(path: Path) -> int:
        key = _key(prefix, path.relative_to(directory).as_posix())
        size = path.stat().st_size
        extra = {"ContentType": _content_type(path)}
        if size > MULTIPART_THRESHOLD:
            s3_client.upload_file(str(path), bucket, key, ExtraArgs=extra)
        else:
            # One PUT per small file: far less overhead than upload_file.
            with path.open("rb") as body:
                s3_client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        return size

    with ThreadPoolExecutor(max_workers=workers) as pool:
        total_bytes = sum(pool.map(upload, files))
    return len(files), total_bytes


def make_client(endpoint_url: str | None = None, workers: int = DEFAULT_WORKERS):
    """An S3 client from the environment, sized for `workers` threads."""
    config = Config(
        max_pool_connections=max(workers, 10),
        retries={"max_attempts": 5, "mode": "standard"},
        # Custom endpoints (moto, MinIO, ...) rarely resolve bucket subdomains.
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or None,
        config=config,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.upload_data",
        description="Upload a Sparkify dataset folder to an S3 bucket.")
    parser.add_argument("--dir", required=True, type=Path,
                        help="dataset folder (with song_data/ and log_data/)")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--endpoint-url",
                        default=os.environ.get("SPARKIFY_S3_ENDPOINT"),
                        help="S3 endpoint (default: $SPARKIFY_S3_ENDPOINT or AWS)")
    parser.add_argument("--prefix", default="",
                        help="key prefix inside the bucket (default: none)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    args = parser.parse_args(argv)

    # Check the folder before touching S3, so a typo fails fast and clearly.
    try:
        dataset_files(args.dir)
    except ValueError as exc:
        parser.error(str(exc))

    started = time.monotonic()
    client = make_client(args.endpoint_url, args.workers)
    try:
        files, size = upload_dir(args.dir, args.bucket, client,
                                 prefix=args.prefix, workers=args.workers)
    except (BotoCoreError, ClientError) as exc:
        # Bad credentials, unreachable endpoint, invalid bucket name...
        parser.exit(1, f"{parser.prog}: upload failed: {exc}\n")
    seconds = time.monotonic() - started
    target = f"s3://{args.bucket}/{args.prefix.strip('/')}"
    print(f"uploaded {files} files, {size} bytes to {target} "
          f"in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
