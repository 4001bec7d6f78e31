-- Where a run was asked for (the platform and its conversation), so its messages go
-- where they belong; and the line manager whose approval the tenant's policy asks for,
-- with the chat identities found for them.
ALTER TABLE runs ADD COLUMN origin_platform TEXT;
ALTER TABLE runs ADD COLUMN origin_conversation TEXT;
ALTER TABLE runs ADD COLUMN line_manager TEXT;

-- What a platform needs to message a conversation later without being asked (Teams'
-- conversation references), by platform and key.
CREATE TABLE chat_conversations (
    platform   TEXT NOT NULL,
    key        TEXT NOT NULL,
    reference  TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (platform, key)
);
