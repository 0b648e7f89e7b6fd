-- Record the window's hours as loaded by this run (one row per hour, bound by the operator).
UPDATE loaded_hours
SET run_id = %(run_id)s, loaded_at = CAST(%(loaded_at)s AS TIMESTAMP)
WHERE hour_start = %(hour_start)s;

INSERT INTO loaded_hours (hour_start, run_id, loaded_at)
SELECT CAST(%(hour_start)s AS TIMESTAMP), %(run_id)s, CAST(%(loaded_at)s AS TIMESTAMP)
WHERE NOT EXISTS (SELECT 1 FROM loaded_hours WHERE hour_start = %(hour_start)s);
