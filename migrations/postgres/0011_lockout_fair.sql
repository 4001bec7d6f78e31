-- Lockout steps are taken round-robin across tenants too, so one tenant's bulk lockouts
-- never queue another tenant's. `lockout_first` becomes a priority: 2 marks the lockout
-- steps of an emergency run, which go before every other step, lockouts of other runs
-- included (runs requested before this migration keep 1).
DROP INDEX steps_lockout;
CREATE INDEX steps_lockout ON steps (state, lockout_first, tenant, not_before, id);
