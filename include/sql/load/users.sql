{% import 'macros.sql' as m with context %}
-- Users take name, gender and level from their latest event (by ts) in any loaded hour.
-- A merge refreshes the users seen in the window and those whose events in loaded hours
-- changed (stale_users, queued by staging), removing a user left with no loaded event;
-- full_refresh rebuilds every user. Either way the queue is taken.
{{ m.lock('users') }}

CREATE TEMP TABLE stale_users_taken AS
SELECT user_id, run_id, queued_at FROM stale_users;

CREATE TEMP TABLE users_in_scope AS
SELECT DISTINCT userid AS user_id FROM staging_events
WHERE userid IS NOT NULL
{%- if not params.full_refresh %} AND ts >= %(window_start)s AND ts < %(window_end)s
UNION
SELECT user_id FROM stale_users_taken
{%- endif %};

{% call m.merge('users', 'user_id', ['first_name', 'last_name', 'gender', 'level'], scope='users_in_scope') -%}
{% if dialect == 'postgres' -%}
-- Walks each user's events newest first on (userid, ts) and stops at the first loaded one.
SELECT latest.*
FROM users_in_scope seen
CROSS JOIN LATERAL (
    SELECT e.userid AS user_id, e.firstname AS first_name, e.lastname AS last_name, e.gender, e.level
    FROM staging_events e
    WHERE e.userid = seen.user_id
      AND EXISTS (SELECT 1 FROM loaded_hours h WHERE h.hour_start = date_trunc('hour', e.ts))
    ORDER BY e.ts DESC, e.sessionid DESC, e.iteminsession DESC, e.level, e.firstname, e.lastname, e.gender
    LIMIT 1
) latest
{%- else -%}
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
WHERE recency = 1
{%- endif %}
{%- endcall %}

DELETE FROM stale_users
USING stale_users_taken t
WHERE stale_users.user_id = t.user_id AND stale_users.run_id = t.run_id AND stale_users.queued_at = t.queued_at;

DROP TABLE users_in_scope;

DROP TABLE stale_users_taken;
