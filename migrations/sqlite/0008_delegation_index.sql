-- The delegation index (core::delegations): each tenant's mailboxes, when each was listed
-- and last scanned, and the rights others hold on it. A plan reads it instead of asking
-- Exchange about every mailbox.
CREATE TABLE index_tenants (
    tenant    TEXT PRIMARY KEY,
    listed_ms BIGINT NOT NULL
);

CREATE TABLE index_mailboxes (
    tenant     TEXT NOT NULL,
    mailbox    TEXT NOT NULL,
    -- The calendar folder's identity, by its real (possibly localised) name.
    calendar   TEXT,
    listed_ms  BIGINT NOT NULL,
    scanned_ms BIGINT,
    PRIMARY KEY (tenant, mailbox)
);
CREATE INDEX index_mailboxes_due ON index_mailboxes (tenant, scanned_ms);

-- `source`: 'listing' (send on behalf, from the mailbox listing) or 'scan'.
CREATE TABLE index_grants (
    tenant     TEXT NOT NULL,
    trustee    TEXT NOT NULL,
    mailbox    TEXT NOT NULL,
    right_name TEXT NOT NULL,
    source     TEXT NOT NULL,
    PRIMARY KEY (tenant, trustee, mailbox, right_name)
);
CREATE INDEX index_grants_mailbox ON index_grants (tenant, mailbox);
