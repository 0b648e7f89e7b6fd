-- The most played songs: plays of the songs that matched a song in the catalogue
-- (a songplay without song_id is a play of an unknown song and can't be ranked).
-- Ties are broken by song_id so the ranking is stable. DAG param: top_n.
SELECT sp.song_id,
       s.title,
       a.name AS artist_name,
       COUNT(*) AS plays,
       COUNT(DISTINCT sp.user_id) AS listeners
FROM songplays sp
JOIN songs s ON s.song_id = sp.song_id
LEFT JOIN artists a ON a.artist_id = sp.artist_id
GROUP BY sp.song_id, s.title, a.name
ORDER BY plays DESC, sp.song_id
LIMIT {{ params.top_n | int }}
