-- The most played artists, over the plays that matched a catalogue song.
-- Ties are broken by artist_id so the ranking is stable. DAG param: top_n.
SELECT sp.artist_id,
       a.name AS artist_name,
       COUNT(*) AS plays,
       COUNT(DISTINCT sp.song_id) AS songs_played,
       COUNT(DISTINCT sp.user_id) AS listeners
FROM songplays sp
JOIN artists a ON a.artist_id = sp.artist_id
GROUP BY sp.artist_id, a.name
ORDER BY plays DESC, sp.artist_id
LIMIT {{ params.top_n | int }}
