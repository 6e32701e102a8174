-- The transactional outbox (events::outbox) and inbox (events::inbox).
-- As small as Debezium's outbox: the event carries the rest.
CREATE TABLE IF NOT EXISTS events_outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL UNIQUE,
    subject    TEXT    NOT NULL,
    body       BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS events_inbox (
    consumer    TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    recorded_ms INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS events_inbox_recorded ON events_inbox (recorded_ms);
