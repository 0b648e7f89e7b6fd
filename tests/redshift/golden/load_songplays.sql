
-- Replace the songplays of the window, and of every earlier loaded hour whose staged events
-- changed since it was loaded (stale_hours, queued by staging); then re-match the loaded plays
-- whose song match key had its songs change (stale_song_matches). One row per NextSong event
-- by a known user; see the plays macro for the de-duplication and the song match.
LOCK songplays;
-- Taken before staging is read: a staging change either committed already (and is read
-- here) or waits on this lock and then queues the hours it touches for the next load.
LOCK loaded_hours;

CREATE TEMP TABLE stale_hours_taken AS
SELECT hour_start, rows_before, rows_after, source_table, run_id, queued_at FROM stale_hours;

CREATE TEMP TABLE songplays_refreshed_hours AS
SELECT DISTINCT hour_start FROM stale_hours_taken
WHERE NOT (hour_start >= %(window_start)s AND hour_start < %(window_end)s);

CREATE TEMP TABLE stale_song_matches_taken AS
SELECT title, artist_name, duration, run_id, queued_at FROM stale_song_matches;

DELETE FROM songplays
WHERE start_time >= %(window_start)s AND start_time < %(window_end)s;

DELETE FROM songplays
USING songplays_refreshed_hours r
WHERE songplays.start_time >= r.hour_start AND songplays.start_time < r.hour_start + INTERVAL '1 hour';

INSERT INTO songplays (songplay_id, start_time, user_id, level, song_id, artist_id, session_id, location, user_agent)
SELECT md5(CAST(e.userid AS VARCHAR) || '|' || CAST(e.sessionid AS VARCHAR) || '|'
    || CAST(e.iteminsession AS VARCHAR) || '|' || TO_CHAR(e.ts, 'YYYY-MM-DD HH24:MI:SS.US')) AS songplay_id,
       e.ts, e.userid, e.level, s.song_id, s.artist_id, e.sessionid, e.location, e.useragent
FROM (
    SELECT staged.*,
           ROW_NUMBER() OVER (PARTITION BY userid, sessionid, iteminsession, ts
                              ORDER BY level, location, useragent, song, artist, length) AS copy_number
    FROM (
    SELECT * FROM staging_events
    WHERE page = 'NextSong' AND userid IS NOT NULL
      AND ts >= %(window_start)s AND ts < %(window_end)s
    UNION ALL
    SELECT e.* FROM staging_events e
    JOIN songplays_refreshed_hours r ON e.ts >= r.hour_start AND e.ts < r.hour_start + INTERVAL '1 hour'
    WHERE e.page = 'NextSong' AND e.userid IS NOT NULL) staged
) e
LEFT JOIN (
    SELECT song_id, artist_id, title, artist_name, duration,
           ROW_NUMBER() OVER (PARTITION BY title, artist_name, duration ORDER BY song_id) AS rank
    FROM staging_songs
) s ON s.rank = 1 AND s.title = e.song AND s.artist_name = e.artist AND s.duration = e.length
WHERE e.copy_number = 1;

-- Late songs: every staged copy of the events that have a changed match key, so the play
-- is re-derived from the same copy the insert above would choose.
UPDATE songplays
SET song_id = rematched.song_id, artist_id = rematched.artist_id
FROM (SELECT md5(CAST(e.userid AS VARCHAR) || '|' || CAST(e.sessionid AS VARCHAR) || '|'
    || CAST(e.iteminsession AS VARCHAR) || '|' || TO_CHAR(e.ts, 'YYYY-MM-DD HH24:MI:SS.US')) AS songplay_id,
       e.ts, e.userid, e.level, s.song_id, s.artist_id, e.sessionid, e.location, e.useragent
FROM (
    SELECT staged.*,
           ROW_NUMBER() OVER (PARTITION BY userid, sessionid, iteminsession, ts
                              ORDER BY level, location, useragent, song, artist, length) AS copy_number
    FROM (
    SELECT copies.* FROM staging_events copies
    JOIN (
        SELECT DISTINCT k.userid, k.sessionid, k.iteminsession, k.ts
        FROM stale_song_matches_taken t
        JOIN staging_events k ON k.song = t.title AND k.artist = t.artist_name AND k.length = t.duration
        WHERE k.page = 'NextSong' AND k.userid IS NOT NULL
    ) stale ON copies.userid = stale.userid AND copies.ts = stale.ts
           AND copies.sessionid = stale.sessionid AND copies.iteminsession = stale.iteminsession
    WHERE copies.page = 'NextSong' AND EXISTS (SELECT 1 FROM stale_song_matches_taken)) staged
) e
LEFT JOIN (
    SELECT song_id, artist_id, title, artist_name, duration,
           ROW_NUMBER() OVER (PARTITION BY title, artist_name, duration ORDER BY song_id) AS rank
    FROM staging_songs
) s ON s.rank = 1 AND s.title = e.song AND s.artist_name = e.artist AND s.duration = e.length
WHERE e.copy_number = 1) rematched
WHERE songplays.songplay_id = rematched.songplay_id
  AND ((songplays.song_id <> rematched.song_id OR (songplays.song_id IS NULL) <> (rematched.song_id IS NULL)) OR (songplays.artist_id <> rematched.artist_id OR (songplays.artist_id IS NULL) <> (rematched.artist_id IS NULL)));

DELETE FROM stale_hours
USING stale_hours_taken t
WHERE stale_hours.hour_start = t.hour_start AND stale_hours.source_table = t.source_table
  AND stale_hours.run_id = t.run_id AND stale_hours.queued_at = t.queued_at;

DELETE FROM stale_song_matches
USING stale_song_matches_taken t
WHERE stale_song_matches.title = t.title AND stale_song_matches.artist_name = t.artist_name
  AND stale_song_matches.duration = t.duration AND stale_song_matches.run_id = t.run_id
  AND stale_song_matches.queued_at = t.queued_at;

-- For the task log: the earlier hours refreshed, and why.
SELECT hour_start, SUM(rows_before), SUM(rows_after), COUNT(*)
FROM stale_hours_taken
WHERE hour_start IN (SELECT hour_start FROM songplays_refreshed_hours)
GROUP BY hour_start
ORDER BY hour_start;

-- The refreshed hours were loaded by this run now (the time and checks of this run cover them).
UPDATE loaded_hours
SET run_id = %(run_id)s, loaded_at = %(loaded_at)s
WHERE hour_start IN (SELECT hour_start FROM songplays_refreshed_hours);

DROP TABLE stale_hours_taken;

DROP TABLE stale_song_matches_taken;

DROP TABLE songplays_refreshed_hours;