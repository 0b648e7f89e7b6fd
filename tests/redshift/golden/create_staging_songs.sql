
-- Song metadata, one row per song JSON object; columns match the JSON keys ('auto').
CREATE TABLE IF NOT EXISTS staging_songs (
    num_songs        INTEGER,
    artist_id        VARCHAR(32) NOT NULL,
    artist_latitude  DOUBLE PRECISION,
    artist_longitude DOUBLE PRECISION,
    artist_location  VARCHAR(512),
    artist_name      VARCHAR(512),
    song_id          VARCHAR(32) NOT NULL,
    title            VARCHAR(512),
    duration         DOUBLE PRECISION,
    year             INTEGER,
    source_key       VARCHAR(1024),
    source_line      INTEGER
)
DISTSTYLE ALL;

