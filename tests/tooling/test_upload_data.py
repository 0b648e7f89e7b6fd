"""Tests for scripts/upload_data.py against a real moto S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from scripts.sample_data import generate
from scripts.upload_data import upload_dir
from support import REPO
from support.ports import free_port

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never pick up a developer's real profile or config.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {url} within {timeout} s")


@pytest.fixture(scope="module")
def aws_env():
    with pytest.MonkeyPatch.context() as patch:
        # Only the endpoints given explicitly by each test may be used.
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                     "SPARKIFY_S3_ENDPOINT"):
            patch.delenv(name, raising=False)
        no_proxy = os.environ.get("NO_PROXY", os.environ.get("no_proxy", ""))
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, ",".join(filter(None, [no_proxy, "127.0.0.1", "localhost"])))
        for name, value in FAKE_AWS_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def moto_endpoint(aws_env, tmp_path_factory):
    """URL of a moto S3 server running for this module."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint,
                        config=Config(max_pool_connections=16))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    generate(root, seed=11, songs=150, days=2, events_per_day=500, users=20)
    return root


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file()}


def bucket_contents(s3, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket: key -> bytes."""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))

    def fetch(key):
        return key, s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(fetch, keys))


def bucket_names(s3) -> set[str]:
    return {b["Name"] for b in s3.list_buckets()["Buckets"]}


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.upload_data", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})})


# --- API --------------------------------------------------------------------

def test_upload_dir_copies_every_file(s3, dataset):
    expected = local_files(dataset)
    assert len(expected) == 150 + 2 + 1
    assert "sparkify-api" not in bucket_names(s3)

    files, size = upload_dir(dataset, "sparkify-api", s3)

    assert "sparkify-api" in bucket_names(s3)  # created on the way
    assert files == len(expected)
    assert size == sum(len(body) for body in expected.values())
    uploaded = bucket_contents(s3, "sparkify-api")
    assert set(uploaded) == set(expected)
    assert uploaded == expected
    assert "log_json_path.json" in uploaded
    assert any(k.startswith("song_data/") for k in uploaded)
    assert "log_data/2018/11/2018-11-01-events.json" in uploaded


def test_upload_dir_with_prefix_into_existing_bucket(s3, dataset):
    s3.create_bucket(Bucket="sparkify-prefixed")
    s3.put_object(Bucket="sparkify-prefixed", Key="keep/me.txt", Body=b"x")

    upload_dir(dataset, "sparkify-prefixed", s3, prefix="/raw/udacity/")

    expected = {f"raw/udacity/{k}": v for k, v in local_files(dataset).items()}
    expected["keep/me.txt"] = b"x"
    assert bucket_contents(s3, "sparkify-prefixed") == expected


def test_upload_dir_twice_is_idempotent(s3, dataset):
    upload_dir(dataset, "sparkify-twice", s3)
    upload_dir(dataset, "sparkify-twice", s3)
    assert bucket_contents(s3, "sparkify-twice") == local_files(dataset)


def test_upload_dir_rejects_non_dataset_folder(s3, tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(ValueError, match="song_data"):
        upload_dir(tmp_path, "sparkify-never", s3)
    with pytest.raises(ValueError):
        upload_dir(tmp_path / "missing", "sparkify-never", s3)
    assert "sparkify-never" not in bucket_names(s3)


def test_log_only_folder_is_accepted(s3, dataset, tmp_path):
    # A folder with only log_data/ is still a dataset (e.g. new days only).
    day = dataset / "log_data" / "2018" / "11" / "2018-11-02-events.json"
    target = tmp_path / "log_data" / "2018" / "11"
    target.mkdir(parents=True)
    (target / day.name).write_bytes(day.read_bytes())
    assert upload_dir(tmp_path, "sparkify-logs-only", s3) == (1, day.stat().st_size)
    assert bucket_contents(s3, "sparkify-logs-only") == local_files(tmp_path)


# --- CLI --------------------------------------------------------------------

def test_cli_uploads_every_file(s3, dataset, moto_endpoint):
    result = run_cli("--dir", str(dataset), "--bucket", "sparkify-cli",
                     "--endpoint-url", moto_endpoint)
    assert result.returncode == 0, result.stderr
    expected = local_files(dataset)
    summary = result.stdout.strip()
    assert len(summary.splitlines()) == 1
    assert f"{len(expected)} files" in summary
    assert f"{sum(map(len, expected.values()))} bytes" in summary
    assert summary.endswith(" s")
    assert bucket_contents(s3, "sparkify-cli") == expected


def test_cli_endpoint_from_env_and_region(s3, dataset, moto_endpoint):
    # Outside us-east-1 the bucket needs a location constraint.
    result = run_cli("--dir", str(dataset), "--bucket", "sparkify-eu", "--prefix", "data",
                     env={"SPARKIFY_S3_ENDPOINT": moto_endpoint,
                          "AWS_DEFAULT_REGION": "eu-west-1"})
    assert result.returncode == 0, result.stderr
    location = s3.get_bucket_location(Bucket="sparkify-eu")["LocationConstraint"]
    assert location == "eu-west-1"
    expected = {f"data/{k}": v for k, v in local_files(dataset).items()}
    assert bucket_contents(s3, "sparkify-eu") == expected


def test_cli_fails_clearly_on_wrong_folder(s3, tmp_path, moto_endpoint):
    (tmp_path / "something").mkdir()
    result = run_cli("--dir", str(tmp_path), "--bucket", "sparkify-wrong",
                     "--endpoint-url", moto_endpoint)
    assert result.returncode != 0
    assert "does not look like a Sparkify dataset" in result.stderr
    assert "Traceback" not in result.stderr
    assert "sparkify-wrong" not in bucket_names(s3)


def test_cli_reports_s3_errors_without_traceback(dataset, moto_endpoint):
    result = run_cli("--dir", str(dataset), "--bucket", "x",  # invalid name
                     "--endpoint-url", moto_endpoint)
    assert result.returncode == 1
    assert "upload failed" in result.stderr
    assert "Traceback" not in result.stderr
