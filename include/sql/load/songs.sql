{% import 'macros.sql' as m with context %}
-- One row per song_id. When staged files disagree, the first by title, artist, year and
-- duration wins, so the choice doesn't depend on load order. Both modes leave exactly the
-- staged song_ids: 'merge' also deletes the songs no longer staged. (PostgreSQL staging
-- replaces a changed file's rows; Redshift's replaces rows by song_id, so there a song_id
-- dropped from a file stays staged.)
{{ m.lock('songs') }}

CREATE TEMP TABLE songs_latest AS
SELECT song_id, title, artist_id, year, duration
FROM (
    SELECT song_id, title, artist_id, year, duration,
           ROW_NUMBER() OVER (PARTITION BY song_id ORDER BY title, artist_id, year, duration) AS choice
    FROM staging_songs
) ranked
WHERE choice = 1;

{% if mode == 'truncate-insert' -%}
DELETE FROM songs;
{%- else -%}
DELETE FROM songs
WHERE NOT EXISTS (SELECT 1 FROM songs_latest l WHERE l.song_id = songs.song_id);

UPDATE songs
SET title = l.title, artist_id = l.artist_id, year = l.year, duration = l.duration
FROM songs_latest l
WHERE songs.song_id = l.song_id
  AND ({{ m.differs('songs.title', 'l.title') }} OR {{ m.differs('songs.artist_id', 'l.artist_id') }}
       OR {{ m.differs('songs.year', 'l.year') }} OR {{ m.differs('songs.duration', 'l.duration') }});
{%- endif %}

INSERT INTO songs (song_id, title, artist_id, year, duration)
SELECT l.song_id, l.title, l.artist_id, l.year, l.duration
FROM songs_latest l
WHERE NOT EXISTS (SELECT 1 FROM songs WHERE songs.song_id = l.song_id);

DROP TABLE songs_latest;
