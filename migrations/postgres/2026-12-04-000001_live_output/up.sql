-- Live output: chunks of a running job's output as its agent streams them, both pipes
-- interleaved in the order they were written. Offsets count UTF-8 bytes of the job's
-- live output; the first LIVE_HEAD bytes and the newest LIVE_TAIL bytes are kept (see
-- orchestrator/src/db/jobs/output.rs), with a gap between them once more was written.
CREATE TABLE job_output (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    start_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    stream TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, start_offset)
);
-- Params whose values are secret (a JSON array of names, NULL for none): masked in job
-- views and, by the agent, in the output.
ALTER TABLE jobs ADD COLUMN secret_params TEXT;
ALTER TABLE fanouts ADD COLUMN secret_params TEXT;

-- Followers on other replicas hear of new output. PostgreSQL folds identical
-- notifications of one transaction into one, so a batch of chunks of one job is one.
CREATE FUNCTION scriptmesh_notify_output() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM scriptmesh_notify('output', NEW.tenant_id, NEW.job_id);
    RETURN NULL;
END $$;
CREATE TRIGGER job_output_notify AFTER INSERT ON job_output
    FOR EACH ROW EXECUTE FUNCTION scriptmesh_notify_output();
