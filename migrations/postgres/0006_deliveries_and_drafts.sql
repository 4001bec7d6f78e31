-- Requests from chat platforms already acted on (a signature, a trigger, an interaction
-- id), shared by every process, so a redelivery or a replay is acted on once.
CREATE TABLE deliveries (
    source     TEXT NOT NULL,
    key        TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX deliveries_expiry ON deliveries (expires_ms);

-- A wizard's answers between pages, so any process may take the next page.
CREATE TABLE chat_drafts (
    key        TEXT PRIMARY KEY,
    draft      TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX chat_drafts_expiry ON chat_drafts (expires_ms);
