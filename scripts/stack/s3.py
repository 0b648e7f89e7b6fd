"""The S3 endpoint: moto's server, in memory, for development only (it forgets its data on stop)."""

from __future__ import annotations

import logging

from .config import HOST, REGION, S3_ACCESS_KEY, S3_SECRET_KEY
from .errors import StackError
from .ports import http_answer
from .service import Service

log = logging.getLogger("sparkify.stack")


class S3(Service):
    name = "s3"
    port_var = "SPARKIFY_S3_PORT"
    tokens = ("moto_server",)

    def __init__(self, config, supervisor, bin_dir):
        super().__init__(config, supervisor)
        self.bin_dir = bin_dir

    @property
    def port(self) -> int:
        return self.config.s3_port

    @property
    def where(self) -> str:
        return f"at {self.config.s3_endpoint}"

    def prepare(self) -> None:
        if not (self.bin_dir / "moto_server").exists():
            raise StackError(f"{self.bin_dir / 'moto_server'} not found; run `make install` first")

    def command(self) -> list[str]:
        return [str(self.bin_dir / "moto_server"), "-H", HOST, "-p", str(self.port)]

    def ready(self) -> bytes | None:
        return http_answer(f"{self.config.s3_endpoint}/moto-api/")

    def started(self) -> None:
        self._ensure_bucket()

    def client(self):
        import boto3
        from botocore.config import Config

        # A session of its own: boto3's default session is not thread-safe (stacks may start in parallel).
        return boto3.session.Session().client(
            "s3", endpoint_url=self.config.s3_endpoint, aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY, region_name=REGION,
            config=Config(proxies={}, retries={"max_attempts": 3}),
        )

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        client = self.client()
        try:
            client.head_bucket(Bucket=self.config.bucket)
        except ClientError:
            client.create_bucket(Bucket=self.config.bucket)
            log.info("created bucket s3://%s (in memory: it is empty after every S3 restart)", self.config.bucket)

    def empty_bucket(self) -> int:
        """Delete every object of the bucket; the number deleted."""
        from botocore.exceptions import ClientError

        client = self.client()
        deleted = 0
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.config.bucket):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=self.config.bucket, Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchBucket", "404"):
                raise
        self._ensure_bucket()
        return deleted
