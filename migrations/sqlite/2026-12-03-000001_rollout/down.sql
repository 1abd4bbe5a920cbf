DROP INDEX jobs_claimable;
CREATE INDEX jobs_pending ON jobs (tenant_id, agent_name) WHERE status = 'pending';
DROP INDEX jobs_awaiting_slot;
ALTER TABLE jobs DROP COLUMN awaiting_slot;
ALTER TABLE fanouts DROP COLUMN max_errors;
ALTER TABLE fanouts DROP COLUMN max_concurrency;
