"""OpenLineage names on Redshift: a staging task run against the Redshift stand-in reports the
objects it read as ``s3://<bucket>`` datasets and its staging table as the amazon provider's
Redshift hook names it, ``redshift://<cluster>.<region>:5439`` and ``database.schema.table``,
with the schema facet read from SVV_REDSHIFT_COLUMNS, on a provisioned cluster and on Serverless."""

from __future__ import annotations

import json

import pytest

from support import fake_redshift, render


@pytest.fixture
def aws_region(monkeypatch):
    # The provider's Redshift naming takes the region from the AWS connection (IAM auth).
    monkeypatch.setenv("AIRFLOW_CONN_SPARKIFY_AWS", json.dumps({"conn_type": "aws", "extra": {"region_name": "us-west-2"}}))


@pytest.mark.parametrize("serverless", [False, True], ids=["provisioned", "serverless"])
def test_staging_lineage_names_on_redshift(aws_region, serverless):
    capture = fake_redshift.run_on_fake_redshift("stage_events", serverless=serverless, lineage=True)
    lineage = capture.lineage
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://udacity-dend", render.EVENT_KEY)]
    (output,) = lineage.outputs
    assert (output.namespace, output.name) == ("redshift://sparkify.us-west-2:5439", "dev.public.staging_events")
    fields = [field.name for field in output.facets["schema"].fields]
    assert fields == [name for name, *_ in render.staging_columns("staging_events")]
