-- Runs, their steps (which double as the job queue), approvals, the outbox, the audit
-- chain and cron schedules. Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    target_upn       TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    target_name      TEXT NOT NULL,
    requester        TEXT NOT NULL,
    requester_name   TEXT NOT NULL,
    state            TEXT NOT NULL,
    request          TEXT NOT NULL,
    snapshot         TEXT NOT NULL,
    plan             TEXT NOT NULL,
    plan_hash        TEXT NOT NULL,
    approvals_needed INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    escalate_at      INTEGER,
    start_at         INTEGER,
    approved_at      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    reason           TEXT,
    version          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_state ON runs (state);
CREATE INDEX runs_tenant_created ON runs (tenant, created_at);

CREATE TABLE steps (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id         TEXT NOT NULL REFERENCES runs (id),
    key            TEXT NOT NULL,
    position       INTEGER NOT NULL,
    after_keys     TEXT NOT NULL,
    lockout        INTEGER NOT NULL,
    defer_days     INTEGER NOT NULL,
    state          TEXT NOT NULL,
    released       INTEGER NOT NULL DEFAULT 0,
    attempt        INTEGER NOT NULL DEFAULT 0,
    not_before     INTEGER NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    lease_until    INTEGER,
    intent_at      INTEGER,
    intent_attempt INTEGER,
    started_at     INTEGER,
    finished_at    INTEGER,
    outcome        TEXT,
    last_error     TEXT,
    UNIQUE (run_id, key)
);
CREATE INDEX steps_claim ON steps (state, not_before);

CREATE TABLE approvals (
    run_id        TEXT NOT NULL REFERENCES runs (id),
    approver      TEXT NOT NULL,
    approver_name TEXT NOT NULL,
    plan_hash     TEXT NOT NULL,
    at            INTEGER NOT NULL,
    PRIMARY KEY (run_id, approver, plan_hash)
);

CREATE TABLE outbox (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    tenant TEXT,
    kind   TEXT NOT NULL,
    body   TEXT NOT NULL,
    at     INTEGER NOT NULL
);

CREATE TABLE outbox_cursors (
    consumer TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
);

CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    tenant    TEXT,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    run_id    TEXT,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE audit_checkpoints (
    seq  INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    at   INTEGER NOT NULL
);

CREATE TABLE schedules (
    name    TEXT PRIMARY KEY,
    cron    TEXT NOT NULL,
    next_at INTEGER NOT NULL
);

CREATE TABLE schedule_fires (
    name     TEXT NOT NULL,
    fire_at  INTEGER NOT NULL,
    fired_by TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (name, fire_at)
);
