
-- One row per user, from that user's latest event. Small: copied to every node on Redshift.
CREATE TABLE IF NOT EXISTS users (
    user_id    INTEGER NOT NULL PRIMARY KEY,
    first_name VARCHAR(256),
    last_name  VARCHAR(256),
    gender     VARCHAR(16),
    level      VARCHAR(16)
)
DISTSTYLE ALL SORTKEY (user_id);