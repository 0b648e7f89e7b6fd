"""Staging JSON from S3 into a warehouse staging table, once per object version.

``StageToRedshiftOperator`` (sparkify.operators.stage) lists the new object versions and hands
them to the engine for its warehouse's dialect, each with the same ``stage(objects, run_id)``:

- ``postgres.PostgresStreamEngine``: streams each object from S3, parses it (sparkify.records)
  and writes with ``COPY FROM STDIN``, rejects and key presence per object;
- ``redshift.RedshiftCopyEngine``: one ``COPY`` from S3 with a manifest of the objects.

Both record what they staged in the ledger tables (``ledger.Ledger``) in the transaction that
stages it, and return a ``base.StageResult``. ``changes`` queues what a change to the staged
rows touches in the loaded star schema (``stale_sql``).
"""
