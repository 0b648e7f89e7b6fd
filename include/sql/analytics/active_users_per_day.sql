-- Active users per UTC day: users who played at least one song that day, split by the
-- level they played at (a user who upgrades during the day counts in both columns once).
SELECT CAST(start_time AS DATE) AS day,
       COUNT(DISTINCT user_id) AS active_users,
       COUNT(DISTINCT CASE WHEN level = 'paid' THEN user_id END) AS paid_users,
       COUNT(DISTINCT CASE WHEN level = 'free' THEN user_id END) AS free_users,
       COUNT(*) AS plays
FROM songplays
GROUP BY CAST(start_time AS DATE)
ORDER BY day
