"""Benchmark harness for Sparkify Pipelines (``make bench`` / ``python -m bench``).

Not a timed test: it measures, side by side in one run, the figures the "Performance" issue
asks for, prints them next to their targets and writes ``bench/results.json`` and
``bench/results.md``. See ``bench/README.md``.
"""
