
-- Users take name, gender and level from their latest event (by ts) in any loaded hour.
-- 'merge' refreshes the users seen in the window; 'truncate-insert' rebuilds every user.
LOCK users;

CREATE TEMP TABLE users_latest AS
SELECT user_id, first_name, last_name, gender, level
FROM (
    SELECT e.userid AS user_id, e.firstname AS first_name, e.lastname AS last_name, e.gender, e.level,
           ROW_NUMBER() OVER (PARTITION BY e.userid
                              ORDER BY e.ts DESC, e.sessionid DESC, e.iteminsession DESC,
                                       e.level, e.firstname, e.lastname, e.gender) AS recency
    FROM staging_events e
    JOIN loaded_hours h ON h.hour_start = date_trunc('hour', e.ts)
    WHERE e.userid IS NOT NULL
      AND e.userid IN (SELECT userid FROM staging_events
                       WHERE ts >= %(window_start)s AND ts < %(window_end)s)
) ranked
WHERE recency = 1;

UPDATE users
SET first_name = l.first_name, last_name = l.last_name, gender = l.gender, level = l.level
FROM users_latest l
WHERE users.user_id = l.user_id
  AND (NOT (users.first_name = l.first_name OR (users.first_name IS NULL AND l.first_name IS NULL)) OR NOT (users.last_name = l.last_name OR (users.last_name IS NULL AND l.last_name IS NULL))
       OR NOT (users.gender = l.gender OR (users.gender IS NULL AND l.gender IS NULL)) OR NOT (users.level = l.level OR (users.level IS NULL AND l.level IS NULL)));

INSERT INTO users (user_id, first_name, last_name, gender, level)
SELECT l.user_id, l.first_name, l.last_name, l.gender, l.level
FROM users_latest l
WHERE NOT EXISTS (SELECT 1 FROM users WHERE users.user_id = l.user_id);

DROP TABLE users_latest;