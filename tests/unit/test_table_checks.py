"""The checks a table declares, as QualityChecksOperator reads them (sparkify.operators.quality)."""

from __future__ import annotations

import pytest

from sparkify.operators.quality import QualityChecksOperator, table_checks


def test_a_column_check_expects_its_equal_to_value():
    (nulls, copies) = table_checks("t", {"columns": {"c": {"null_check": {"equal_to": 2},
                                                           "unique_check": {"equal_to": 0}}}})
    assert (nulls.name, nulls.check_type, nulls.column, nulls.expected) == ("c.null_check", "null", "c", "2")
    assert (copies.name, copies.check_type, copies.expected) == ("c.unique_check", "unique", "0")


@pytest.mark.parametrize("kinds", [
    {"distinct_check": {"equal_to": 5}},  # a check whose offending rows the report can't show
    {"min": {"geq_to": 0}},
    {"null_check": {"less_than": 3}},  # a condition other than equal_to
    {"null_check": {"equal_to": 0, "tolerance": 0.1}},
])
def test_an_unsupported_column_check_fails_when_the_dag_is_built(kinds):
    with pytest.raises(ValueError, match=r"t\.c\..*a column check is one of null_check, unique_check with an equal_to"):
        QualityChecksOperator(task_id="checks", conn_id="warehouse", checks={"t": {"columns": {"c": kinds}}})
