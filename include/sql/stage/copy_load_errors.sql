{#- Redshift: the lines this session's last COPY rejected, from Redshift's own record (also
    read after a COPY that failed on MAXERROR, to name the file, line and reason): on
    provisioned clusters stl_load_errors, on Redshift Serverless sys_load_error_detail (see
    load_history.sql). -#}
{% import 'load_history.sql' as history with context -%}
{% if serverless -%}
SELECT TRIM(file_name), line_number, TRIM(column_name), TRIM(error_message)
FROM sys_load_error_detail
{%- else -%}
SELECT TRIM(filename), line_number, TRIM(colname), TRIM(err_reason)
FROM stl_load_errors
{%- endif %}
WHERE {{ 'query_id' if serverless else 'query' }} = {{ history.last_copy_id() }}
ORDER BY 1, 2
