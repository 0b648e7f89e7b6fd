
-- One row per song_id. When staged files disagree, the first by title, artist, year and
-- duration wins, so the choice doesn't depend on load order. Both modes leave exactly the
-- staged song_ids: a merge also deletes the songs no longer staged. (PostgreSQL staging
-- replaces a changed file's rows; Redshift's replaces rows by song_id, so there a song_id
-- dropped from a file stays staged.)
LOCK songs;

CREATE TEMP TABLE songs_latest AS
SELECT song_id, title, artist_id, year, duration
FROM (
    SELECT song_id, title, artist_id, year, duration,
           ROW_NUMBER() OVER (PARTITION BY song_id ORDER BY title, artist_id, year, duration) AS choice
    FROM staging_songs
) ranked
WHERE choice = 1;

DELETE FROM songs;

INSERT INTO songs (song_id, title, artist_id, year, duration)
SELECT l.song_id, l.title, l.artist_id, l.year, l.duration
FROM songs_latest l
WHERE NOT EXISTS (SELECT 1 FROM songs WHERE songs.song_id = l.song_id);

DROP TABLE songs_latest;