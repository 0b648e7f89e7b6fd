"""Benchmark harness for Sparkify Pipelines (``make bench`` / ``python -m bench``).

Not a timed test: it measures, side by side in one run, what staging, loading and parsing cost
against the alternatives (raw COPY, ``S3ToSqlOperator``, an empty DAG), prints them next to
their targets and writes ``bench/results.json`` and ``bench/results.md``. See ``bench/README.md``.
"""
