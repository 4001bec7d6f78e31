-- Which process drives an outbox consumer (the chat relay, a notification target) now.
-- A consumer runs in one process at a time, so no chat message or notification is sent
-- twice; another process takes over when the lease runs out.
CREATE TABLE consumer_leases (
    consumer TEXT PRIMARY KEY,
    owner    TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
