{% import 'macros.sql' as m with context %}
-- Song match keys (title, artist name, duration) whose staged songs changed: a play with one of
-- them may now match another song, or none. Queued by staging, taken by the next songplays
-- load, which re-matches the loaded plays with these keys and no others.
CREATE TABLE IF NOT EXISTS stale_song_matches (
    title       VARCHAR(512) NOT NULL,
    artist_name VARCHAR(512) NOT NULL,
    duration    DOUBLE PRECISION NOT NULL,
    run_id      VARCHAR(256) NOT NULL,
    queued_at   TIMESTAMP NOT NULL
){{ m.distribution('ALL') }};
