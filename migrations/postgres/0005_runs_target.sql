-- A person's open run is looked up on every request (one run per person at a time).
CREATE INDEX runs_target ON runs (tenant, target_id);
