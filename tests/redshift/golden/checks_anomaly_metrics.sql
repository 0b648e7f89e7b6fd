SELECT CASE WHEN ts >= %(window_start)s THEN 'window' ELSE 'baseline' END AS period,
       COUNT(*) AS events,
       COUNT(CASE WHEN page = 'NextSong' THEN 1 END) AS plays,
       COUNT(CASE WHEN page = 'NextSong' AND userid IS NOT NULL THEN 1 END) AS plays_with_user,
       COUNT(artist) AS present_0,
       COUNT(auth) AS present_1,
       COUNT(firstname) AS present_2,
       COUNT(gender) AS present_3,
       COUNT(iteminsession) AS present_4,
       COUNT(lastname) AS present_5,
       COUNT(length) AS present_6,
       COUNT(level) AS present_7,
       COUNT(location) AS present_8,
       COUNT(method) AS present_9,
       COUNT(page) AS present_10,
       COUNT(registration) AS present_11,
       COUNT(sessionid) AS present_12,
       COUNT(song) AS present_13,
       COUNT(status) AS present_14,
       COUNT(ts) AS present_15,
       COUNT(useragent) AS present_16,
       COUNT(userid) AS present_17
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