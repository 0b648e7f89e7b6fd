SELECT pg_last_copy_count();

SELECT TRIM(file_name), SUM(lines_scanned)
FROM sys_load_detail
WHERE query_id = (SELECT MAX(query_id) FROM sys_load_history WHERE session_id = pg_backend_pid())
GROUP BY 1