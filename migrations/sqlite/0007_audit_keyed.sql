-- Entries whose hash is an HMAC under the audit key (kept outside the database).
ALTER TABLE audit ADD COLUMN keyed BIGINT NOT NULL DEFAULT 0;
CREATE INDEX audit_run ON audit (run_id, seq);
CREATE INDEX audit_keyed ON audit (keyed, seq);
