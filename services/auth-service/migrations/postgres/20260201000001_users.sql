-- auth-service's users. The event of every change goes into events_outbox in the same
-- transaction (events::outbox).
CREATE TABLE IF NOT EXISTS users (
    id              TEXT   PRIMARY KEY,
    organization_id TEXT   NOT NULL,
    email           TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    roles           TEXT   NOT NULL, -- JSON array of role names
    revision        BIGINT NOT NULL,
    UNIQUE (organization_id, email)
);
