-- Rollout controls of a fan-out: at most `max_concurrency` of its jobs queued or running
-- at once, and once `max_errors` of them failed the rest end cancelled.
ALTER TABLE fanouts ADD COLUMN max_concurrency INTEGER, ADD COLUMN max_errors INTEGER;
-- A pending job that waits for a rollout slot: no claim takes it until it is released.
ALTER TABLE jobs ADD COLUMN awaiting_slot BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX jobs_awaiting_slot ON jobs (fanout_id, id) WHERE awaiting_slot;
-- The claim's index: an agent's claimable jobs in id order, so that the claim (a prepared
-- statement, whose generic plan cannot see which agent it is for) reads exactly the rows
-- it takes instead of walking the primary key. It replaces the index on pending jobs.
DROP INDEX jobs_pending;
CREATE INDEX jobs_claimable ON jobs (tenant_id, agent_name, id) WHERE status = 'pending' AND NOT awaiting_slot;

-- A released job is news like a queued one; one still awaiting its slot is not.
CREATE OR REPLACE FUNCTION scriptmesh_notify_job() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' THEN
        IF NOT NEW.awaiting_slot
            AND (TG_OP = 'INSERT' OR OLD.status <> 'pending' OR OLD.awaiting_slot) THEN
            PERFORM scriptmesh_notify('queued', NEW.tenant_id, NEW.agent_name);
        END IF;
    ELSIF NEW.status IN ('success', 'failed', 'timeout', 'cancelled', 'lost') THEN
        IF TG_OP = 'INSERT' OR OLD.status <> NEW.status THEN
            PERFORM scriptmesh_notify('finished', NEW.tenant_id, NEW.id, NEW.fanout_id);
        END IF;
    ELSIF TG_OP = 'UPDATE' AND NEW.cancel_requested AND NOT OLD.cancel_requested THEN
        PERFORM scriptmesh_notify('cancel', NEW.tenant_id, NEW.agent_name, NEW.id);
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER jobs_notify ON jobs;
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status, cancel_requested, awaiting_slot ON jobs
    FOR EACH ROW EXECUTE FUNCTION scriptmesh_notify_job();
