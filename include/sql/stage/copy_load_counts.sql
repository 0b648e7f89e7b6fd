{#- Redshift: what this session's last COPY loaded in all, then what it read per file (lines
    scanned, over all slices). Redshift counts both itself, so lines read = rows staged + rows
    rejected checks its own accounting. Provisioned clusters only (STL views), see
    copy_load_errors.sql. -#}
SELECT pg_last_copy_count();

SELECT TRIM(filename), SUM(lines_scanned)
FROM stl_load_commits
WHERE query = pg_last_copy_id()
GROUP BY 1
