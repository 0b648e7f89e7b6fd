{% import 'macros.sql' as m with context %}
{#- Which loaded hours (and users) a change to staging_events touches, queued for the loads
    to re-derive. Rendered twice around the change: `phase` 'before' sums the touched rows per
    (hour, user) as they were, 'after' as they are now; a group whose count or sum of row
    hashes differs changed. Only hours already in loaded_hours are queued: the others get
    loaded by their own run. The SHARE lock on loaded_hours waits for a songplays load in
    flight, which takes it first, so no hour is loaded from rows this change replaces
    without being queued. -#}
{%- set columns = ['artist', 'auth', 'firstname', 'gender', 'iteminsession', 'lastname', 'length', 'level',
                   'location', 'method', 'page', 'registration', 'sessionid', 'song', 'status', 'ts',
                   'useragent', 'userid'] -%}
{%- set sign = '' if phase == 'after' else '-' -%}
{% if phase == 'before' -%}
CREATE TEMP TABLE staging_events_changes AS
{%- else -%}
INSERT INTO staging_events_changes
{%- endif %}
SELECT date_trunc('hour', ts) AS hour_start, userid, {{ sign }}COUNT(*) AS row_count,
       {{ sign }}SUM({{ m.row_hash(columns) }}) AS row_hashes
FROM ({{ m.changed_rows('staging_events', phase, upsert_keys) }}) touched
-- Rows of hours not loaded need no hashing (a first load of a day file hashes nothing); an
-- hour loaded between the two phases shows as changed and is refreshed, which is harmless.
WHERE date_trunc('hour', ts) IN (SELECT hour_start FROM loaded_hours)
GROUP BY date_trunc('hour', ts), userid;
{%- if phase == 'after' %}

{{ m.lock('loaded_hours', shared=true) }}

CREATE TEMP TABLE staging_events_changed AS
SELECT c.hour_start, c.userid,
       SUM(CASE WHEN c.row_count < 0 THEN -c.row_count ELSE 0 END) AS rows_before,
       SUM(CASE WHEN c.row_count > 0 THEN c.row_count ELSE 0 END) AS rows_after
FROM staging_events_changes c
GROUP BY c.hour_start, c.userid
HAVING SUM(c.row_count) <> 0 OR SUM(c.row_hashes) <> 0;

INSERT INTO stale_hours (hour_start, rows_before, rows_after, source_table, run_id, queued_at)
SELECT hour_start, SUM(rows_before), SUM(rows_after), 'staging_events', %(run_id)s, %(queued_at)s
FROM staging_events_changed
GROUP BY hour_start;

INSERT INTO stale_users (user_id, run_id, queued_at)
SELECT DISTINCT userid, %(run_id)s, %(queued_at)s
FROM staging_events_changed
WHERE userid IS NOT NULL;

-- For the task log: the loaded hours this change touched.
SELECT hour_start, SUM(rows_before), SUM(rows_after)
FROM staging_events_changed
GROUP BY hour_start
ORDER BY hour_start;

DROP TABLE staging_events_changed;

DROP TABLE staging_events_changes;
{%- endif %}
