
-- One row per artist_id. Song files often disagree about an artist; prefer the record with
-- a location and coordinates, then the lowest song_id, then the lowest values, so the choice
-- depends on the staged rows alone, not on load order.
-- Both modes leave exactly the staged artist_ids: a merge deletes those no longer staged.
LOCK artists;

CREATE TEMP TABLE artists_latest AS
SELECT artist_id, name, location, latitude, longitude
FROM (
    SELECT artist_id, artist_name AS name, artist_location AS location,
           artist_latitude AS latitude, artist_longitude AS longitude,
           ROW_NUMBER() OVER (PARTITION BY artist_id
                              ORDER BY CASE WHEN artist_location IS NULL THEN 1 ELSE 0 END,
                                       CASE WHEN artist_latitude IS NULL THEN 1 ELSE 0 END,
                                       song_id, artist_name, artist_location, artist_latitude, artist_longitude) AS choice
    FROM staging_songs
) ranked
WHERE choice = 1;

DELETE FROM artists;

INSERT INTO artists (artist_id, name, location, latitude, longitude)
SELECT l.artist_id, l.name, l.location, l.latitude, l.longitude
FROM artists_latest l
WHERE NOT EXISTS (SELECT 1 FROM artists WHERE artists.artist_id = l.artist_id);

DROP TABLE artists_latest;