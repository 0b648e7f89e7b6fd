
-- Users take name, gender and level from their latest event (by ts) in any loaded hour.
-- A merge refreshes the users seen in the window and those whose events in loaded hours
-- changed (stale_users, queued by staging), removing a user left with no loaded event;
-- full_refresh rebuilds every user. Either way the queue is taken.
LOCK users;

CREATE TEMP TABLE stale_users_taken AS
SELECT user_id, run_id, queued_at FROM stale_users;

CREATE TEMP TABLE users_in_scope AS
SELECT DISTINCT userid AS user_id FROM staging_events
WHERE userid IS NOT NULL AND ts >= %(window_start)s AND ts < %(window_end)s
UNION
SELECT user_id FROM stale_users_taken;

CREATE TEMP TABLE users_latest AS
SELECT user_id, first_name, last_name, gender, level
FROM (
    SELECT e.userid AS user_id, e.firstname AS first_name, e.lastname AS last_name, e.gender, e.level,
           ROW_NUMBER() OVER (PARTITION BY e.userid
                              ORDER BY e.ts DESC, e.sessionid DESC, e.iteminsession DESC,
                                       e.level, e.firstname, e.lastname, e.gender) AS recency
    FROM staging_events e
    JOIN loaded_hours h ON h.hour_start = date_trunc('hour', e.ts)
    WHERE e.userid IN (SELECT user_id FROM users_in_scope)
) ranked
WHERE recency = 1;

DELETE FROM users
WHERE user_id IN (SELECT user_id FROM users_in_scope)
  AND NOT EXISTS (SELECT 1 FROM users_latest l WHERE l.user_id = users.user_id);

UPDATE users
SET first_name = l.first_name, last_name = l.last_name, gender = l.gender, level = l.level
FROM users_latest l
WHERE users.user_id = l.user_id
  AND ((users.first_name <> l.first_name OR (users.first_name IS NULL) <> (l.first_name IS NULL)) OR (users.last_name <> l.last_name OR (users.last_name IS NULL) <> (l.last_name IS NULL)) OR (users.gender <> l.gender OR (users.gender IS NULL) <> (l.gender IS NULL)) OR (users.level <> l.level OR (users.level IS NULL) <> (l.level IS NULL)));

INSERT INTO users (user_id, first_name, last_name, gender, level)
SELECT l.user_id, l.first_name, l.last_name, l.gender, l.level
FROM users_latest l
WHERE NOT EXISTS (SELECT 1 FROM users WHERE users.user_id = l.user_id);

DROP TABLE users_latest;

DELETE FROM stale_users
USING stale_users_taken t
WHERE stale_users.user_id = t.user_id AND stale_users.run_id = t.run_id AND stale_users.queued_at = t.queued_at;

DROP TABLE users_in_scope;

DROP TABLE stale_users_taken;