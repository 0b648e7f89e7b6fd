{% import 'macros.sql' as m with context %}
{#- Which song match keys (title, artist name, duration) a change to staging_songs touches,
    queued for the songplays load to re-match the plays that have them. Rendered twice around
    the change like stage/stale_hours.sql: a key whose songs (their song_id and artist_id,
    all a match gives a play) differ before and after is queued. A key with a NULL part
    matches no play. -#}
{%- set sign = '' if phase == 'after' else '-' -%}
{% if phase == 'before' -%}
CREATE TEMP TABLE staging_songs_changes AS
{%- else -%}
INSERT INTO staging_songs_changes
{%- endif %}
SELECT title, artist_name, duration, {{ sign }}COUNT(*) AS row_count,
       {{ sign }}SUM({{ m.row_hash(['song_id', 'artist_id']) }}) AS row_hashes
FROM ({{ m.changed_rows('staging_songs', phase, upsert_keys) }}) touched
WHERE title IS NOT NULL AND artist_name IS NOT NULL AND duration IS NOT NULL
GROUP BY title, artist_name, duration;
{%- if phase == 'after' %}

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
{%- endif %}
