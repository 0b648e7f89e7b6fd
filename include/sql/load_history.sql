{#- Redshift's own record of a COPY, on provisioned clusters and on Redshift Serverless.

    Provisioned clusters keep it in the STL views (stl_load_commits, stl_load_errors), keyed
    by the query id pg_last_copy_id() returns. Redshift Serverless has no STL views: the SYS
    monitoring views (sys_load_history, sys_load_detail, sys_load_error_detail) hold it, under
    their own query ids, so the COPY is found as this session's latest in sys_load_history.
    Templates import this `with context`: `serverless` comes from the warehouse connection
    (the Redshift hook's `is_serverless` extra). -#}

{#- The id, in the views' own numbering, of this session's last COPY. -#}
{% macro last_copy_id() -%}
{%- if serverless -%}
(SELECT MAX(query_id) FROM sys_load_history WHERE session_id = pg_backend_pid())
{%- else -%}
pg_last_copy_id()
{%- endif -%}
{%- endmacro %}
