-- A step that answers "not yet" goes back to the queue without counting an attempt:
-- `polls` says how many of its claims were such looks, `waiting_since` when the first was.
ALTER TABLE steps ADD COLUMN polls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE steps ADD COLUMN waiting_since INTEGER;

-- Fair claims: ready steps are taken round-robin across tenants, lockout steps first.
ALTER TABLE steps ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
UPDATE steps SET tenant = (SELECT tenant FROM runs WHERE runs.id = steps.run_id);
CREATE INDEX steps_fair ON steps (state, tenant, not_before, id);
-- `lockout` says what the emergency path may release; `lockout_first` marks every step of
-- the lockout group, which every claim takes before anything else.
ALTER TABLE steps ADD COLUMN lockout_first INTEGER NOT NULL DEFAULT 0;
UPDATE steps SET lockout_first = 1 WHERE key IN ('disable_sign_in', 'revoke_sessions', 'reset_password', 'remove_mfa_methods');
CREATE INDEX steps_lockout ON steps (state, lockout_first, not_before, id);

-- Rates found for limits Microsoft does not publish, per tenant and lane, so a restart
-- starts from what was learned.
CREATE TABLE learned_rates (
    scope      TEXT NOT NULL,
    lane       TEXT NOT NULL,
    per_s      REAL NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, lane)
);
