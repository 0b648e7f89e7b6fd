{#- One check as a query of its own: what a failure report and OpenLineage's assertion show. -#}
{% import 'macros.sql' as m -%}
SELECT {{ check.expected }} AS expected, {{ check.actual }} AS actual {{ m.checked_rows(check.table, window_column) }}
