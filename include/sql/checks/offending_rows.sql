{#- A few rows that explain why `check` failed: the values a unique check found more than once,
    the rows with a NULL, the rows that don't meet a row condition (CASE, not NOT (...): a row
    where the condition is NULL doesn't meet it either), or the rows a reconciliation names. -#}
{% import 'macros.sql' as m -%}
{% if check.check_type == 'unique' -%}
SELECT {{ check.column }}, COUNT(*) AS copies {{ m.checked_rows(check.table, window_column) }}
GROUP BY {{ check.column }} HAVING COUNT(*) > 1 ORDER BY copies DESC
{%- elif check.check_type == 'null' -%}
SELECT * {{ m.checked_rows(check.table, window_column, check.column ~ ' IS NULL') }}
{%- elif check.check_type == 'row_condition' -%}
SELECT * {{ m.checked_rows(check.table, window_column, '(CASE WHEN ' ~ check.condition ~ ' THEN 0 ELSE 1 END) = 1') }}
{%- else -%}
{{ check.offending }}
{%- endif %}
LIMIT {{ sample_rows }}
