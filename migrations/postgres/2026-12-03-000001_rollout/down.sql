DROP TRIGGER jobs_notify ON jobs;
CREATE OR REPLACE FUNCTION scriptmesh_notify_job() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' THEN
        IF TG_OP = 'INSERT' OR OLD.status <> 'pending' THEN
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
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status, cancel_requested ON jobs
    FOR EACH ROW EXECUTE FUNCTION scriptmesh_notify_job();
DROP INDEX jobs_claimable;
CREATE INDEX jobs_pending ON jobs (tenant_id, agent_name) WHERE status = 'pending';
DROP INDEX jobs_awaiting_slot;
ALTER TABLE jobs DROP COLUMN awaiting_slot;
ALTER TABLE fanouts DROP COLUMN max_errors, DROP COLUMN max_concurrency;
