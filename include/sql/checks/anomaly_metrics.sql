{#- The counts behind the anomaly checks (sparkify.anomalies), per period: 'window' is the run's
    window, 'baseline' the trailing days before it. First the staged events (by event time):
    all of them, the NextSong ones, those with a user, and each column's non-null values; then,
    over the hours in loaded_hours only (staging holds whole day files, songplays only loaded
    hours), the songplays and the staged NextSong events they came from. -#}
SELECT CASE WHEN ts >= %(window_start)s THEN 'window' ELSE 'baseline' END AS period,
       COUNT(*) AS events,
       COUNT(CASE WHEN page = 'NextSong' THEN 1 END) AS plays,
       COUNT(CASE WHEN page = 'NextSong' AND userid IS NOT NULL THEN 1 END) AS plays_with_user
       {%- for column in columns %},
       COUNT({{ column }}) AS present_{{ loop.index0 }}
       {%- endfor %}
FROM staging_events
WHERE ts >= %(baseline_start)s AND ts < %(window_end)s
GROUP BY 1;

SELECT CASE WHEN h.hour_start >= %(window_start)s THEN 'window' ELSE 'baseline' END AS period,
       COALESCE(SUM(p.songplays), 0) AS songplays,
       COALESCE(SUM(e.plays), 0) AS loaded_plays
FROM loaded_hours h
LEFT JOIN (
    SELECT date_trunc('hour', start_time) AS hour_start, COUNT(*) AS songplays
    FROM songplays
    WHERE start_time >= %(baseline_start)s AND start_time < %(window_end)s
    GROUP BY 1
) p ON p.hour_start = h.hour_start
LEFT JOIN (
    SELECT date_trunc('hour', ts) AS hour_start, COUNT(*) AS plays
    FROM staging_events
    WHERE page = 'NextSong' AND ts >= %(baseline_start)s AND ts < %(window_end)s
    GROUP BY 1
) e ON e.hour_start = h.hour_start
WHERE h.hour_start >= %(baseline_start)s AND h.hour_start < %(window_end)s
GROUP BY 1
