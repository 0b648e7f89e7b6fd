{#- A row condition on loaded_hours: the hour's songplays are exactly those its staged events
    give now (same ids, same values, song matches included). An hour that drifted, because
    staging changed after it was loaded and it was not refreshed, fails it. `drift_scope` is
    'run' (the hourly checks: the run's window and the hours its load refreshed) or 'all'
    (the audit of every loaded hour). -#}
{% import 'macros.sql' as m %}
{%- set hours -%}
SELECT hour_start FROM loaded_hours
{%- if drift_scope != 'all' %}
WHERE run_id = %(run_id)s
   OR (hour_start >= %(window_start)s AND hour_start < %(window_end)s)
{%- endif %}
{%- endset -%}
hour_start NOT IN (
    SELECT DISTINCT date_trunc('hour', COALESCE(derived.ts, loaded.start_time))
    FROM ({{ m.plays("
        SELECT e.* FROM staging_events e
        JOIN (" ~ hours ~ ") h ON e.ts >= h.hour_start AND e.ts < " ~ m.hour_end('h.hour_start') ~ "
        WHERE e.page = 'NextSong' AND e.userid IS NOT NULL") }}) derived
    FULL JOIN (
        SELECT p.* FROM songplays p
        JOIN ({{ hours }}) h ON p.start_time >= h.hour_start AND p.start_time < {{ m.hour_end('h.hour_start') }}
    ) loaded ON loaded.songplay_id = derived.songplay_id
    WHERE derived.songplay_id IS NULL OR loaded.songplay_id IS NULL
       OR {{ m.differs('derived.song_id', 'loaded.song_id') }} OR {{ m.differs('derived.artist_id', 'loaded.artist_id') }}
       OR {{ m.differs('derived.level', 'loaded.level') }} OR {{ m.differs('derived.location', 'loaded.location') }}
       OR {{ m.differs('derived.useragent', 'loaded.user_agent') }} OR derived.ts <> loaded.start_time
       OR derived.userid <> loaded.user_id OR derived.sessionid <> loaded.session_id
)
