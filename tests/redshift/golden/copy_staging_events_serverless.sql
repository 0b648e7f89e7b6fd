CREATE TEMP TABLE staging_events_new (LIKE staging_events);

COPY staging_events_new (artist, auth, firstname, gender, iteminsession, lastname, length, level, location, method, page, registration, sessionid, song, status, ts, useragent, userid)
FROM 's3://udacity-dend/manifests/staging_events/scheduled__2018-11-01T00_00_00_00_00.manifest'
IAM_ROLE 'arn:aws:iam::123456789012:role/sparkify-redshift'
REGION 'us-west-2'
FORMAT AS JSON 's3://udacity-dend/log_json_path.json'
TIMEFORMAT 'epochmillisecs'
TRUNCATECOLUMNS
BLANKSASNULL
EMPTYASNULL
MAXERROR 10
MANIFEST;

-- Rejected lines of this COPY go to the same rejects table as on the PostgreSQL path, keyed by
-- object key as there; they replace the rejects of earlier versions of the objects it read.
DELETE FROM stage_rejects
WHERE table_name = %(table)s
  AND source_key IN (SELECT REGEXP_REPLACE(TRIM(file_name), '^s3://[^/]+/', '')
                     FROM sys_load_detail WHERE query_id = (SELECT MAX(query_id) FROM sys_load_history WHERE session_id = pg_backend_pid()));

INSERT INTO stage_rejects (table_name, source_key, source_line, field, reason, raw_text, run_id, rejected_at)
-- sys_load_error_detail keeps no copy of the rejected line: raw_text stays empty.
SELECT %(table)s, REGEXP_REPLACE(TRIM(file_name), '^s3://[^/]+/', ''), line_number, TRIM(column_name),
       TRIM(error_message), NULL, %(run_id)s, GETDATE()
FROM sys_load_error_detail
WHERE query_id = (SELECT MAX(query_id) FROM sys_load_history WHERE session_id = pg_backend_pid());


CREATE TEMP TABLE staging_events_changes AS
SELECT date_trunc('hour', ts) AS hour_start, userid, -COUNT(*) AS row_count,
       -SUM(STRTOL(SUBSTRING(MD5(COALESCE(CAST(artist AS VARCHAR), '~') || '|' || COALESCE(CAST(auth AS VARCHAR), '~') || '|' || COALESCE(CAST(firstname AS VARCHAR), '~') || '|' || COALESCE(CAST(gender AS VARCHAR), '~') || '|' || COALESCE(CAST(iteminsession AS VARCHAR), '~') || '|' || COALESCE(CAST(lastname AS VARCHAR), '~') || '|' || COALESCE(CAST(length AS VARCHAR), '~') || '|' || COALESCE(CAST(level AS VARCHAR), '~') || '|' || COALESCE(CAST(location AS VARCHAR), '~') || '|' || COALESCE(CAST(method AS VARCHAR), '~') || '|' || COALESCE(CAST(page AS VARCHAR), '~') || '|' || COALESCE(CAST(registration AS VARCHAR), '~') || '|' || COALESCE(CAST(sessionid AS VARCHAR), '~') || '|' || COALESCE(CAST(song AS VARCHAR), '~') || '|' || COALESCE(CAST(status AS VARCHAR), '~') || '|' || COALESCE(CAST(ts AS VARCHAR), '~') || '|' || COALESCE(CAST(useragent AS VARCHAR), '~') || '|' || COALESCE(CAST(userid AS VARCHAR), '~')), 1, 7), 16)) AS row_hashes
FROM (SELECT * FROM staging_events WHERE EXISTS (
    SELECT 1 FROM staging_events_new n
    WHERE n.sessionid = staging_events.sessionid AND n.iteminsession = staging_events.iteminsession AND n.ts = staging_events.ts)) touched
-- Rows of hours not loaded need no hashing (a first load of a day file hashes nothing); an
-- hour loaded between the two phases shows as changed and is refreshed, which is harmless.
WHERE date_trunc('hour', ts) IN (SELECT hour_start FROM loaded_hours)
GROUP BY date_trunc('hour', ts), userid;

DELETE FROM staging_events
USING staging_events_new
WHERE staging_events.sessionid = staging_events_new.sessionid AND staging_events.iteminsession = staging_events_new.iteminsession AND staging_events.ts = staging_events_new.ts;

INSERT INTO staging_events SELECT * FROM staging_events_new;

INSERT INTO staging_events_changes
SELECT date_trunc('hour', ts) AS hour_start, userid, COUNT(*) AS row_count,
       SUM(STRTOL(SUBSTRING(MD5(COALESCE(CAST(artist AS VARCHAR), '~') || '|' || COALESCE(CAST(auth AS VARCHAR), '~') || '|' || COALESCE(CAST(firstname AS VARCHAR), '~') || '|' || COALESCE(CAST(gender AS VARCHAR), '~') || '|' || COALESCE(CAST(iteminsession AS VARCHAR), '~') || '|' || COALESCE(CAST(lastname AS VARCHAR), '~') || '|' || COALESCE(CAST(length AS VARCHAR), '~') || '|' || COALESCE(CAST(level AS VARCHAR), '~') || '|' || COALESCE(CAST(location AS VARCHAR), '~') || '|' || COALESCE(CAST(method AS VARCHAR), '~') || '|' || COALESCE(CAST(page AS VARCHAR), '~') || '|' || COALESCE(CAST(registration AS VARCHAR), '~') || '|' || COALESCE(CAST(sessionid AS VARCHAR), '~') || '|' || COALESCE(CAST(song AS VARCHAR), '~') || '|' || COALESCE(CAST(status AS VARCHAR), '~') || '|' || COALESCE(CAST(ts AS VARCHAR), '~') || '|' || COALESCE(CAST(useragent AS VARCHAR), '~') || '|' || COALESCE(CAST(userid AS VARCHAR), '~')), 1, 7), 16)) AS row_hashes
FROM (SELECT * FROM staging_events_new) touched
-- Rows of hours not loaded need no hashing (a first load of a day file hashes nothing); an
-- hour loaded between the two phases shows as changed and is refreshed, which is harmless.
WHERE date_trunc('hour', ts) IN (SELECT hour_start FROM loaded_hours)
GROUP BY date_trunc('hour', ts), userid;

LOCK loaded_hours;

CREATE TEMP TABLE staging_events_changed AS
SELECT c.hour_start, c.userid,
       SUM(CASE WHEN c.row_count < 0 THEN -c.row_count ELSE 0 END) AS rows_before,
       SUM(CASE WHEN c.row_count > 0 THEN c.row_count ELSE 0 END) AS rows_after
FROM staging_events_changes c
GROUP BY c.hour_start, c.userid
HAVING SUM(c.row_count) <> 0 OR SUM(c.row_hashes) <> 0;

INSERT INTO stale_hours (hour_start, rows_before, rows_after, source_table, run_id, queued_at)
SELECT hour_start, SUM(rows_before), SUM(rows_after), 'staging_events', %(run_id)s, %(queued_at)s
FROM staging_events_changed
GROUP BY hour_start;

INSERT INTO stale_users (user_id, run_id, queued_at)
SELECT DISTINCT userid, %(run_id)s, %(queued_at)s
FROM staging_events_changed
WHERE userid IS NOT NULL;

-- For the task log: the loaded hours this change touched.
SELECT hour_start, SUM(rows_before), SUM(rows_after)
FROM staging_events_changed
GROUP BY hour_start
ORDER BY hour_start;

DROP TABLE staging_events_changed;

DROP TABLE staging_events_changes;


DROP TABLE staging_events_new;