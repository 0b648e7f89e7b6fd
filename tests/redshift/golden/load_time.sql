
-- One row per distinct songplays.start_time in the window and in the earlier hours this run's
-- songplays load refreshed (loaded_hours.run_id), parts derived in UTC (weekday: 0 = Sunday).
LOCK time;

CREATE TEMP TABLE time_hours AS
SELECT hour_start FROM loaded_hours
WHERE run_id = %(run_id)s AND NOT (hour_start >= %(window_start)s AND hour_start < %(window_end)s);

DELETE FROM time
WHERE start_time >= %(window_start)s AND start_time < %(window_end)s;

DELETE FROM time
USING time_hours h
WHERE time.start_time >= h.hour_start AND time.start_time < h.hour_start + INTERVAL '1 hour';

INSERT INTO time (start_time, hour, day, week, month, year, weekday)
SELECT start_time,
       EXTRACT(HOUR FROM start_time), EXTRACT(DAY FROM start_time), EXTRACT(WEEK FROM start_time),
       EXTRACT(MONTH FROM start_time), EXTRACT(YEAR FROM start_time), EXTRACT(DOW FROM start_time)
FROM (
    SELECT DISTINCT start_time FROM songplays
    WHERE start_time >= %(window_start)s AND start_time < %(window_end)s
    UNION
    SELECT DISTINCT p.start_time FROM songplays p
    JOIN time_hours h ON p.start_time >= h.hour_start AND p.start_time < h.hour_start + INTERVAL '1 hour'
) played;

DROP TABLE time_hours;