
-- Replace the window's songplays: one row per NextSong event by a known user whose ts is
-- in [window_start, window_end). The song match needs title, artist name and duration
-- to be equal; when several songs match, the lowest song_id wins.
-- An event staged twice (the same user, session, item and ts) gives one play: the copy
-- first by the values the play takes from it, so the choice depends on the staged rows
-- alone, never on which file or line they came from (Redshift's COPY records neither).
LOCK songplays;

DELETE FROM songplays
WHERE start_time >= %(window_start)s AND start_time < %(window_end)s;

INSERT INTO songplays (songplay_id, start_time, user_id, level, song_id, artist_id, session_id, location, user_agent)
SELECT md5(CAST(e.userid AS VARCHAR) || '|' || CAST(e.sessionid AS VARCHAR) || '|'
    || CAST(e.iteminsession AS VARCHAR) || '|' || TO_CHAR(e.ts, 'YYYY-MM-DD HH24:MI:SS.US')),
       e.ts, e.userid, e.level, s.song_id, s.artist_id, e.sessionid, e.location, e.useragent
FROM (
    SELECT staging_events.*,
           ROW_NUMBER() OVER (PARTITION BY userid, sessionid, iteminsession, ts
                              ORDER BY level, location, useragent, song, artist, length) AS copy_number
    FROM staging_events
    WHERE page = 'NextSong' AND userid IS NOT NULL
      AND ts >= %(window_start)s AND ts < %(window_end)s
) e
LEFT JOIN (
    SELECT song_id, artist_id, title, artist_name, duration,
           ROW_NUMBER() OVER (PARTITION BY title, artist_name, duration ORDER BY song_id) AS rank
    FROM staging_songs
) s ON s.rank = 1 AND s.title = e.song AND s.artist_name = e.artist AND s.duration = e.length
WHERE e.copy_number = 1;