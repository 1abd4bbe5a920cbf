-- Agents, the job queue, fan-outs and the domain event log.
CREATE TABLE agents (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    url TEXT,
    hostname TEXT,
    os TEXT,
    version TEXT,
    scripts TEXT NOT NULL DEFAULT '[]',
    manifest_reported BOOLEAN NOT NULL DEFAULT 0,
    api_key_id TEXT,
    agent_key_hash TEXT,
    status TEXT NOT NULL,
    heartbeat_interval BIGINT NOT NULL,
    last_heartbeat BIGINT,
    registered_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_name TEXT NOT NULL,
    script TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    stdout_truncated BOOLEAN NOT NULL DEFAULT 0,
    stderr_truncated BOOLEAN NOT NULL DEFAULT 0,
    duration_ms BIGINT,
    timeout_secs BIGINT,
    reason TEXT,
    fanout_id TEXT,
    schedule_id TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    dispatched_at BIGINT,
    started_at BIGINT,
    completed_at BIGINT
);
-- The queue: an agent's pending jobs, oldest first (ids are time-ordered).
CREATE INDEX jobs_queue ON jobs (tenant_id, agent_name, status, id);
CREATE INDEX jobs_tenant ON jobs (tenant_id, id);
CREATE INDEX jobs_fanout ON jobs (fanout_id) WHERE fanout_id IS NOT NULL;
CREATE INDEX jobs_active ON jobs (status) WHERE status IN ('dispatched', 'running');

CREATE TABLE fanouts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    script TEXT NOT NULL,
    params TEXT NOT NULL,
    selector TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_tenant ON events (tenant_id, id);
