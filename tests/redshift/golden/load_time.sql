
-- One row per distinct songplays.start_time in the window, parts derived in UTC
-- (weekday: 0 = Sunday).
LOCK time;

DELETE FROM time
WHERE start_time >= %(window_start)s AND start_time < %(window_end)s;

INSERT INTO time (start_time, hour, day, week, month, year, weekday)
SELECT start_time,
       EXTRACT(HOUR FROM start_time), EXTRACT(DAY FROM start_time), EXTRACT(WEEK FROM start_time),
       EXTRACT(MONTH FROM start_time), EXTRACT(YEAR FROM start_time), EXTRACT(DOW FROM start_time)
FROM (
    SELECT DISTINCT start_time FROM songplays
    WHERE start_time >= %(window_start)s AND start_time < %(window_end)s
) played;