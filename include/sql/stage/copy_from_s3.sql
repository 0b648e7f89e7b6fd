{#- Redshift path: COPY only the new objects (listed in a manifest) into a session temp
    table, then swap them into staging in the same transaction. Rows whose upsert key
    matches a new row are replaced, so a changed object replaces what it gave before; a record
    dropped from a changed object stays staged, since Redshift's COPY can't say which file a
    row came from (the PostgreSQL path, which can, replaces by object). -#}
CREATE TEMP TABLE {{ table }}_new (LIKE {{ table }});

COPY {{ table }}_new ({{ columns | join(', ') }})
FROM '{{ manifest_url }}'
{{ credentials }}
REGION '{{ region }}'
FORMAT AS JSON '{{ json_format }}'
TIMEFORMAT 'epochmillisecs'
TRUNCATECOLUMNS
BLANKSASNULL
EMPTYASNULL
MAXERROR {{ max_errors }}
MANIFEST;

-- Rejected lines of this COPY go to the same rejects table as on the PostgreSQL path, keyed by
-- object key as there; they replace the rejects of earlier versions of the objects it read.
{% import 'load_history.sql' as history with context -%}
DELETE FROM stage_rejects
WHERE table_name = %(table)s
{%- if serverless %}
  AND source_key IN (SELECT REGEXP_REPLACE(TRIM(file_name), '^s3://[^/]+/', '')
                     FROM sys_load_detail WHERE query_id = {{ history.last_copy_id() }});
{%- else %}
  AND source_key IN (SELECT REGEXP_REPLACE(TRIM(filename), '^s3://[^/]+/', '')
                     FROM stl_load_commits WHERE query = pg_last_copy_id());
{%- endif %}

INSERT INTO stage_rejects (table_name, source_key, source_line, field, reason, raw_text, run_id, rejected_at)
{%- if serverless %}
-- sys_load_error_detail keeps no copy of the rejected line: raw_text stays empty.
SELECT %(table)s, REGEXP_REPLACE(TRIM(file_name), '^s3://[^/]+/', ''), line_number, TRIM(column_name),
       TRIM(error_message), NULL, %(run_id)s, GETDATE()
FROM sys_load_error_detail
WHERE query_id = {{ history.last_copy_id() }};
{%- else %}
SELECT %(table)s, REGEXP_REPLACE(TRIM(filename), '^s3://[^/]+/', ''), line_number, TRIM(colname),
       TRIM(err_reason), TRIM(raw_line), %(run_id)s, GETDATE()
FROM stl_load_errors
WHERE query = pg_last_copy_id();
{%- endif %}

{% if stale_sql %}
{% with phase = 'before' %}{% include stale_sql %}{% endwith %}
{% endif %}
DELETE FROM {{ table }}
USING {{ table }}_new
WHERE {% for key in upsert_keys %}{{ table }}.{{ key }} = {{ table }}_new.{{ key }}{% if not loop.last %} AND {% endif %}{% endfor %};

INSERT INTO {{ table }} SELECT * FROM {{ table }}_new;
{% if stale_sql %}
{% with phase = 'after' %}{% include stale_sql %}{% endwith %}
{% endif %}

DROP TABLE {{ table }}_new;
