{#- Redshift: what this session's last COPY loaded in all, then what it read per file (lines
    scanned, over all slices). Redshift counts both itself, so lines read = rows staged + rows
    rejected checks its own accounting. Provisioned clusters read the STL views, Redshift
    Serverless the SYS views (see load_history.sql). -#}
{% import 'load_history.sql' as history with context -%}
SELECT pg_last_copy_count();

{% if serverless -%}
SELECT TRIM(file_name), SUM(lines_scanned)
FROM sys_load_detail
WHERE query_id = {{ history.last_copy_id() }}
GROUP BY 1
{%- else -%}
SELECT TRIM(filename), SUM(lines_scanned)
FROM stl_load_commits
WHERE query = {{ history.last_copy_id() }}
GROUP BY 1
{%- endif %}
