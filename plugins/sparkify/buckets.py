"""Telling a bucket that can't be used (a configuration error) from S3 having a bad moment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook


def require_bucket(s3: S3Hook, bucket: str) -> None:
    """Fail at once, without retries, if ``bucket`` is missing or access is refused.

    S3Hook.check_for_bucket answers False for every error, a 503 included, which would turn
    a passing outage into a permanent failure: any other error propagates so Airflow retries.
    """
    from botocore.exceptions import ClientError

    try:
        s3.get_conn().head_bucket(Bucket=bucket)
    except ClientError as err:
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = err.response.get("Error", {}).get("Code")
        if status not in (401, 403, 404) and code != "NoSuchBucket":
            raise
        raise AirflowFailException(
            f"bucket {bucket!r} does not exist, or connection {s3.aws_conn_id!r} has no access to it "
            f"(HTTP {status} {code}; check the bucket name and the connection's credentials)"
        ) from None
