
-- The fact: one row per NextSong event by a known user. songplay_id is a hash of the
-- event's identity, so every load of the same event yields the same id.
-- Redshift: distributed on user_id (the largest join, to users) and sorted on start_time,
-- which every window load and analyst query filters on.
CREATE TABLE IF NOT EXISTS songplays (
    songplay_id VARCHAR(32) NOT NULL PRIMARY KEY,
    start_time  TIMESTAMP NOT NULL,
    user_id     INTEGER NOT NULL,
    level       VARCHAR(16),
    song_id     VARCHAR(32),
    artist_id   VARCHAR(32),
    session_id  INTEGER NOT NULL,
    location    VARCHAR(512),
    user_agent  VARCHAR(1024)
)
DISTSTYLE KEY DISTKEY (user_id) SORTKEY (start_time);
