-- Record the window's hours as loaded by this run: one row per hour in [window_start, window_end).
DELETE FROM loaded_hours
WHERE hour_start >= %(window_start)s AND hour_start < %(window_end)s;

INSERT INTO loaded_hours (hour_start, run_id, loaded_at)
WITH RECURSIVE window_hours (hour_start) AS (
    SELECT CAST(%(window_start)s AS TIMESTAMP)
    UNION ALL
    SELECT hour_start + INTERVAL '1 hour' FROM window_hours
    WHERE hour_start + INTERVAL '1 hour' < %(window_end)s
)
SELECT hour_start, %(run_id)s, CAST(%(loaded_at)s AS TIMESTAMP) FROM window_hours;