{#- Redshift path: COPY only the new objects (listed in a manifest) into a session temp
    table, then swap them into staging in the same transaction. Rows whose upsert key
    matches a new row are replaced, so a changed object replaces what it gave before. -#}
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

-- Rejected lines of this COPY go to the same rejects table as on the PostgreSQL path.
INSERT INTO stage_rejects (table_name, source_key, source_line, field, reason, raw_text, run_id, rejected_at)
SELECT %(table)s, TRIM(filename), line_number, TRIM(colname), TRIM(err_reason), TRIM(raw_line), %(run_id)s, GETDATE()
FROM stl_load_errors
WHERE query = pg_last_copy_id();

DELETE FROM {{ table }}
USING {{ table }}_new
WHERE {% for key in upsert_keys %}{{ table }}.{{ key }} = {{ table }}_new.{{ key }}{% if not loop.last %} AND {% endif %}{% endfor %};

INSERT INTO {{ table }} SELECT * FROM {{ table }}_new;

DROP TABLE {{ table }}_new;
