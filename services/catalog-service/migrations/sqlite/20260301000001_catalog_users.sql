-- catalog-service's projection: one row per user id seen, live or a tombstone. Each event
-- is applied together with its record in events_inbox (events::inbox).
CREATE TABLE IF NOT EXISTS catalog_users (
    organization_id TEXT   NOT NULL,
    user_id         TEXT   NOT NULL,
    live            BIGINT NOT NULL, -- 1 live, 0 deleted (tombstone)
    revision        BIGINT NOT NULL,
    slot            TEXT   NOT NULL, -- the projection's Slot as JSON
    PRIMARY KEY (organization_id, user_id)
);
