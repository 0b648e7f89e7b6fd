"""Sparkify pipeline building blocks: operators, SQL helpers and pure parsing code.

The plugins folder is on ``sys.path`` in Airflow, so DAGs import this as a normal package.
"""
