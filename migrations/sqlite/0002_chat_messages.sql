-- Messages a chat adapter posted for a run (the approval message, the status message, …),
-- as the adapter identifies them. One per run, surface and kind: posting is idempotent.
CREATE TABLE chat_messages (
    run_id     TEXT NOT NULL,
    surface    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    message    TEXT NOT NULL,
    PRIMARY KEY (run_id, surface, kind)
);
