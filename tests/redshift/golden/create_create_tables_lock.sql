-- Two first runs creating the tables at once would race in the catalog; the first to take
-- this lock creates them, the other waits and finds them. Held until create_tables commits.
SELECT 1