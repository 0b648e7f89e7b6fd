SELECT TRIM(file_name), line_number, TRIM(column_name), TRIM(error_message)
FROM sys_load_error_detail
WHERE query_id = (SELECT MAX(query_id) FROM sys_load_history WHERE session_id = pg_backend_pid())
ORDER BY 1, 2