
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
) ranked
WHERE recency = 1;

DELETE FROM users;

INSERT INTO users (user_id, first_name, last_name, gender, level)
SELECT l.user_id, l.first_name, l.last_name, l.gender, l.level
FROM users_latest l
WHERE NOT EXISTS (SELECT 1 FROM users WHERE users.user_id = l.user_id);

DROP TABLE users_latest;