SELECT pg_last_copy_count();

SELECT TRIM(filename), SUM(lines_scanned)
FROM stl_load_commits
WHERE query = pg_last_copy_id()
GROUP BY 1