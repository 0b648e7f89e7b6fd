{#- Redshift path: after the COPY into the session temp table, its rows and each column's
    non-null values. COPY loads NULL for a JSON key that is missing, so a column NULL in every
    row of a COPY of more than a few rows means its key most likely vanished (schema drift). -#}
SELECT COUNT(*){% for column in columns %}, COUNT({{ column }}){% endfor %}
FROM {{ table }}_new
