{#- One table's checks in one query, as common.sql's SQLTableCheckOperator runs them: for each
    check, its measure over the checked rows, then the value the measure must equal. -#}
{% import 'macros.sql' as m -%}
SELECT {% for check in checks %}{{ check.actual }}, {{ check.expected }}{{ ", " if not loop.last }}{% endfor %}
{{ m.checked_rows(table, window_column) }}
