
-- Raw app events, one row per JSON line. Data columns follow log_json_path.json in order;
-- NOT NULL marks the fields a record can't be staged without.
-- Staging keeps history so dimension loads can see each user's latest event.
CREATE TABLE IF NOT EXISTS staging_events (
    artist        VARCHAR(512),
    auth          VARCHAR(32),
    firstname     VARCHAR(256),
    gender        VARCHAR(16),
    iteminsession INTEGER NOT NULL,
    lastname      VARCHAR(256),
    length        DOUBLE PRECISION,
    level         VARCHAR(16),
    location      VARCHAR(512),
    method        VARCHAR(16),
    page          VARCHAR(64) NOT NULL,
    registration  DOUBLE PRECISION,
    sessionid     INTEGER NOT NULL,
    song          VARCHAR(512),
    status        INTEGER,
    ts            TIMESTAMP NOT NULL,
    useragent     VARCHAR(1024),
    userid        INTEGER,
    source_key    VARCHAR(1024),
    source_line   INTEGER
)
DISTSTYLE KEY DISTKEY (userid) SORTKEY (ts);



