-- The transactional outbox (events::outbox) and inbox (events::inbox).
-- As small as Debezium's outbox: the event carries the rest.
CREATE TABLE IF NOT EXISTS events_outbox (
    seq        BIGSERIAL PRIMARY KEY,
    event_id   TEXT      NOT NULL UNIQUE,
    subject    TEXT      NOT NULL,
    body       BYTEA     NOT NULL,
    created_ms BIGINT    NOT NULL
);

CREATE TABLE IF NOT EXISTS events_inbox (
    consumer    TEXT   NOT NULL,
    event_id    TEXT   NOT NULL,
    recorded_ms BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS events_inbox_recorded ON events_inbox (recorded_ms);
