{#- Redshift: the lines this session's last COPY rejected, from Redshift's own record (also
    read after a COPY that failed on MAXERROR, to name the file, line and reason).
    stl_load_errors, not sys_load_error_detail: only the STL view's query id is the one
    pg_last_copy_id() returns, and it keeps the raw line. STL views exist on provisioned
    clusters only; Redshift Serverless would need sys_load_error_detail, tied to the COPY
    through sys_query_history, which this pipeline does not do. -#}
SELECT TRIM(filename), line_number, TRIM(colname), TRIM(err_reason)
FROM stl_load_errors
WHERE query = pg_last_copy_id()
ORDER BY 1, 2
