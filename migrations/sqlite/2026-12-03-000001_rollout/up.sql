-- Rollout controls of a fan-out: at most `max_concurrency` of its jobs queued or running
-- at once, and once `max_errors` of them failed the rest end cancelled.
ALTER TABLE fanouts ADD COLUMN max_concurrency INTEGER;
ALTER TABLE fanouts ADD COLUMN max_errors INTEGER;
-- A pending job that waits for a rollout slot: no claim takes it until it is released.
ALTER TABLE jobs ADD COLUMN awaiting_slot BOOLEAN NOT NULL DEFAULT 0;
CREATE INDEX jobs_awaiting_slot ON jobs (fanout_id, id) WHERE awaiting_slot;
-- The claim's index: an agent's claimable jobs in id order, so that the claim (a prepared
-- statement, whose generic plan cannot see which agent it is for) reads exactly the rows
-- it takes instead of walking the primary key. It replaces the index on pending jobs.
DROP INDEX jobs_pending;
CREATE INDEX jobs_claimable ON jobs (tenant_id, agent_name, id) WHERE status = 'pending' AND NOT awaiting_slot;
