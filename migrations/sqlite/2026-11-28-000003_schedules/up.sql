-- Cron schedules and the record of each of their fires. Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- Exactly one of agent_name and tags (a JSON array of strings) is set.
    agent_name TEXT,
    tags TEXT,
    script TEXT NOT NULL,
    cron_expression TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    params TEXT NOT NULL DEFAULT '{}',
    webhook_url TEXT,
    timeout_secs BIGINT,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    overlap TEXT NOT NULL DEFAULT 'skip',
    misfire_grace_secs BIGINT NOT NULL DEFAULT 60,
    -- The next slot to fire; replicas claim it by compare-and-set. NULL while paused.
    next_fire_at BIGINT,
    last_fire_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX schedules_tenant ON schedules (tenant_id, id);
CREATE INDEX schedules_enabled ON schedules (tenant_id) WHERE enabled;

CREATE TABLE schedule_runs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    schedule_id TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    scheduled_for BIGINT NOT NULL,
    fired_at BIGINT,
    -- fired | skipped | missed | caught_up
    outcome TEXT NOT NULL,
    job_ids TEXT NOT NULL DEFAULT '[]',
    reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX schedule_runs_schedule ON schedule_runs (schedule_id, scheduled_for, id);

-- The overlap check: is a job of this schedule still pending, dispatched or running?
CREATE INDEX jobs_schedule ON jobs (schedule_id, status) WHERE schedule_id IS NOT NULL;
