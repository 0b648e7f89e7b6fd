"""`make data` uploads a dataset folder (DATA_DIR=…, or generated sample data) to the local bucket."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3

from support import REPO
from support.ports import free_port
from scripts.sample_data import generate


def stack_env(state_dir: Path) -> dict[str, str]:
    """The environment of a stack of its own (state dir, free ports) for `make`."""
    return {
        **os.environ,
        "SPARKIFY_STATE_DIR": str(state_dir),
        "SPARKIFY_S3_PORT": str(free_port()),
        "SPARKIFY_PG_PORT": str(free_port()),
        "SPARKIFY_API_PORT": str(free_port()),
        "SPARKIFY_BUCKET": "make-data-test",
    }


def make(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def bucket_files(env: dict[str, str]) -> dict[str, int]:
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{env['SPARKIFY_S3_PORT']}",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          region_name="us-east-1")
    uploaded = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=env["SPARKIFY_BUCKET"]):
        uploaded.update({obj["Key"]: obj["Size"] for obj in page.get("Contents", [])})
    return uploaded


def local_files(data_dir: Path) -> dict[str, int]:
    return {path.relative_to(data_dir).as_posix(): path.stat().st_size for path in data_dir.rglob("*") if path.is_file()}


def test_make_data_uploads_every_file(tmp_path):
    data_dir = tmp_path / "dataset"
    generate(data_dir, seed=9, songs=25, days=2, events_per_day=50, users=4)
    env = stack_env(tmp_path / "state")
    try:
        result = make(env, "data", f"DATA_DIR={data_dir}")
        assert result.returncode == 0, result.stderr
        local = local_files(data_dir)
        assert len(local) == 25 + 2 + 1
        assert bucket_files(env) == local
    finally:
        make(env, "down")


def test_make_data_generates_sample_data_and_runs_twice(tmp_path):
    """Without DATA_DIR it generates into the stack's state dir and uploads; a second run
    (as `make demo` twice does) regenerates the same files instead of refusing the folder."""
    state_dir = tmp_path / "state"
    env = stack_env(state_dir)
    knobs = ("SONGS=20", "DAYS=1", "EVENTS_PER_DAY=50", "SEED=7")
    sample_dir = state_dir / "sample_data"
    try:
        first = make(env, "data", *knobs)
        assert first.returncode == 0, first.stderr
        generated = local_files(sample_dir)
        assert len(generated) == 20 + 1 + 1
        assert bucket_files(env) == generated

        second = make(env, "data", *knobs)
        assert second.returncode == 0, second.stderr
        assert local_files(sample_dir) == generated
        assert bucket_files(env) == generated
    finally:
        make(env, "down")
