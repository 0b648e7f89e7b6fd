{% import 'macros.sql' as m with context %}
CREATE TABLE IF NOT EXISTS songs (
    song_id   VARCHAR(32) NOT NULL PRIMARY KEY,
    title     VARCHAR(512),
    artist_id VARCHAR(32),
    year      INTEGER,
    duration  DOUBLE PRECISION
){{ m.distribution('ALL', sortkey='song_id') }};
