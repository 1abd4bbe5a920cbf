-- Several orchestrators on one database: every write another replica must react to
-- sends a notification on the channel `scriptmesh` when its transaction commits. The
-- payload is space-separated words: the writer's application_name (each replica sets its
-- own, so it can skip its own news), the kind, then ids (see orchestrator/src/cluster).

CREATE FUNCTION scriptmesh_notify(kind TEXT, VARIADIC ids TEXT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    -- array_to_string leaves out NULLs (a job outside any fan-out has no fanout_id).
    PERFORM pg_notify('scriptmesh',
        current_setting('application_name') || ' ' || kind || ' ' || array_to_string(ids, ' '));
END $$;

-- Jobs: queued (insert or requeue), finished (terminal, or a late result over `lost`),
-- and cancel orders for jobs an agent holds.
CREATE FUNCTION scriptmesh_notify_job() RETURNS TRIGGER
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

-- Agents: what replicas cache (registration, status, tags, manifest, key); a heartbeat
-- that changes none of it is no news.
CREATE FUNCTION scriptmesh_notify_agent() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM scriptmesh_notify('agent', OLD.tenant_id, OLD.name);
    ELSIF TG_OP = 'INSERT' OR (OLD.status, OLD.tags, OLD.scripts, OLD.manifest_reported,
            OLD.api_key_id, OLD.heartbeat_interval)
        IS DISTINCT FROM (NEW.status, NEW.tags, NEW.scripts, NEW.manifest_reported,
            NEW.api_key_id, NEW.heartbeat_interval) THEN
        PERFORM scriptmesh_notify('agent', NEW.tenant_id, NEW.name);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER agents_notify AFTER INSERT OR UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION scriptmesh_notify_agent();

-- API keys: a revocation must stop the key on every replica at once.
CREATE FUNCTION scriptmesh_notify_key() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM scriptmesh_notify('key', OLD.id);
    ELSIF OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at THEN
        PERFORM scriptmesh_notify('key', NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER api_keys_notify AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION scriptmesh_notify_key();

-- Schedules: created, changed, paused, resumed, fired (a new next slot) or deleted.
CREATE FUNCTION scriptmesh_notify_schedule() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM scriptmesh_notify('schedule', OLD.tenant_id, OLD.id);
    ELSE
        PERFORM scriptmesh_notify('schedule', NEW.tenant_id, NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER schedules_notify AFTER INSERT OR UPDATE OR DELETE ON schedules
    FOR EACH ROW EXECUTE FUNCTION scriptmesh_notify_schedule();

-- The once-a-second re-checks that cover a lost notification: which agents have queued
-- jobs, and which schedules changed lately.
CREATE INDEX jobs_pending ON jobs (tenant_id, agent_name) WHERE status = 'pending';
CREATE INDEX schedules_updated ON schedules (updated_at);
CREATE INDEX agents_updated ON agents (updated_at);
