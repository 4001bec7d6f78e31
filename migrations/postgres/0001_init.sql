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
    approvals_needed BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    escalate_at      BIGINT,
    start_at         BIGINT,
    approved_at      BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    reason           TEXT,
    version          BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_state ON runs (state);
CREATE INDEX runs_tenant_created ON runs (tenant, created_at);

CREATE TABLE steps (
    id             BIGSERIAL PRIMARY KEY,
    run_id         TEXT NOT NULL REFERENCES runs (id),
    key            TEXT NOT NULL,
    position       BIGINT NOT NULL,
    after_keys     TEXT NOT NULL,
    lockout        BIGINT NOT NULL,
    defer_days     BIGINT NOT NULL,
    state          TEXT NOT NULL,
    released       BIGINT NOT NULL DEFAULT 0,
    attempt        BIGINT NOT NULL DEFAULT 0,
    not_before     BIGINT NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    lease_until    BIGINT,
    intent_at      BIGINT,
    intent_attempt BIGINT,
    started_at     BIGINT,
    finished_at    BIGINT,
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
    at            BIGINT NOT NULL,
    PRIMARY KEY (run_id, approver, plan_hash)
);

CREATE TABLE outbox (
    seq    BIGSERIAL PRIMARY KEY,
    run_id TEXT,
    tenant TEXT,
    kind   TEXT NOT NULL,
    body   TEXT NOT NULL,
    at     BIGINT NOT NULL
);

CREATE TABLE outbox_cursors (
    consumer TEXT PRIMARY KEY,
    seq      BIGINT NOT NULL
);

CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    tenant    TEXT,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    run_id    TEXT,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TABLE audit_checkpoints (
    seq  BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    at   BIGINT NOT NULL
);

CREATE TABLE schedules (
    name    TEXT PRIMARY KEY,
    cron    TEXT NOT NULL,
    next_at BIGINT NOT NULL
);

CREATE TABLE schedule_fires (
    name     TEXT NOT NULL,
    fire_at  BIGINT NOT NULL,
    fired_by TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (name, fire_at)
);
