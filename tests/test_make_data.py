"""`make data DATA_DIR=…` uploads every file of a dataset folder to the local bucket."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3

from conftest import REPO, free_port
from scripts.sample_data import generate


def test_make_data_uploads_every_file(tmp_path):
    data_dir = tmp_path / "dataset"
    generate(data_dir, seed=9, songs=25, days=2, events_per_day=50, users=4)
    state_dir = tmp_path / "state"
    env = {
        **os.environ,
        "SPARKIFY_STATE_DIR": str(state_dir),
        "SPARKIFY_S3_PORT": str(free_port()),
        "SPARKIFY_PG_PORT": str(free_port()),
        "SPARKIFY_API_PORT": str(free_port()),
        "SPARKIFY_BUCKET": "make-data-test",
    }
    try:
        subprocess.run(["make", "-s", "data", f"DATA_DIR={data_dir}"], cwd=REPO, env=env, check=True,
                       capture_output=True, timeout=300)
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{env['SPARKIFY_S3_PORT']}",
                              aws_access_key_id="sparkify-local", aws_secret_access_key="sparkify-local",
                              region_name="us-east-1")
        uploaded = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="make-data-test"):
            uploaded.update({obj["Key"]: obj["Size"] for obj in page.get("Contents", [])})
        local = {path.relative_to(data_dir).as_posix(): path.stat().st_size
                 for path in Path(data_dir).rglob("*") if path.is_file()}
        assert len(local) == 25 + 2 + 1
        assert uploaded == local
    finally:
        subprocess.run(["make", "-s", "down"], cwd=REPO, env=env, capture_output=True, timeout=120)
