-- The claim walks (state, not_before, id) in order and stops at the first row.
DROP INDEX steps_claim;
CREATE INDEX steps_claim ON steps (state, not_before, id);
