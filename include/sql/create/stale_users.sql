{% import 'macros.sql' as m with context %}
-- Users with changed staged events in loaded hours, queued by staging and taken by the next
-- users load, which re-derives them (or removes a user left with no loaded event).
CREATE TABLE IF NOT EXISTS stale_users (
    user_id   INTEGER NOT NULL,
    run_id    VARCHAR(256) NOT NULL,
    queued_at TIMESTAMP NOT NULL
){{ m.distribution('ALL') }};
