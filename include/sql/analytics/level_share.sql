-- Paid vs free: plays at each subscription level (the level at the time of the play),
-- the users who played at that level, and the level's share of all plays in percent.
SELECT level,
       COUNT(*) AS plays,
       COUNT(DISTINCT user_id) AS users,
       CAST(ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 2) AS DECIMAL(5, 2)) AS share_pct
FROM songplays
GROUP BY level
ORDER BY level
