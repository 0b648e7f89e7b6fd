CREATE TEMP TABLE staging_songs_new (LIKE staging_songs);

COPY staging_songs_new (num_songs, artist_id, artist_latitude, artist_longitude, artist_location, artist_name, song_id, title, duration, year)
FROM 's3://udacity-dend/manifests/staging_songs/scheduled__2018-11-01T00_00_00_00_00.manifest'
IAM_ROLE 'arn:aws:iam::123456789012:role/sparkify-redshift'
REGION 'us-west-2'
FORMAT AS JSON 'auto'
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


CREATE TEMP TABLE staging_songs_changes AS
SELECT title, artist_name, duration, -COUNT(*) AS row_count,
       -SUM(STRTOL(SUBSTRING(MD5(COALESCE(CAST(song_id AS VARCHAR), '~') || '|' || COALESCE(CAST(artist_id AS VARCHAR), '~')), 1, 7), 16)) AS row_hashes
FROM (SELECT * FROM staging_songs WHERE EXISTS (
    SELECT 1 FROM staging_songs_new n
    WHERE n.song_id = staging_songs.song_id)) touched
WHERE title IS NOT NULL AND artist_name IS NOT NULL AND duration IS NOT NULL
GROUP BY title, artist_name, duration;

DELETE FROM staging_songs
USING staging_songs_new
WHERE staging_songs.song_id = staging_songs_new.song_id;

INSERT INTO staging_songs SELECT * FROM staging_songs_new;

INSERT INTO staging_songs_changes
SELECT title, artist_name, duration, COUNT(*) AS row_count,
       SUM(STRTOL(SUBSTRING(MD5(COALESCE(CAST(song_id AS VARCHAR), '~') || '|' || COALESCE(CAST(artist_id AS VARCHAR), '~')), 1, 7), 16)) AS row_hashes
FROM (SELECT * FROM staging_songs_new) touched
WHERE title IS NOT NULL AND artist_name IS NOT NULL AND duration IS NOT NULL
GROUP BY title, artist_name, duration;

CREATE TEMP TABLE staging_songs_changed AS
SELECT title, artist_name, duration
FROM staging_songs_changes
GROUP BY title, artist_name, duration
HAVING SUM(row_count) <> 0 OR SUM(row_hashes) <> 0;

INSERT INTO stale_song_matches (title, artist_name, duration, run_id, queued_at)
SELECT title, artist_name, duration, %(run_id)s, %(queued_at)s
FROM staging_songs_changed;

-- For the task log: how many match keys changed.
SELECT COUNT(*) FROM staging_songs_changed;

DROP TABLE staging_songs_changed;

DROP TABLE staging_songs_changes;


DROP TABLE staging_songs_new;