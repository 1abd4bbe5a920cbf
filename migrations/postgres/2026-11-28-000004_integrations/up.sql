-- Integrations (Slack, PagerDuty, webhooks, ...), the deliveries made to them and to
-- schedules' webhook URLs, every attempt of those, and PagerDuty alerts still open.
-- Times are milliseconds since the Unix epoch (UTC); configs and payloads are JSON text.
CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- slack | discord | teams | pagerduty | datadog | splunk | prometheus | webhook
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    -- The type's settings, secrets included (never returned whole by the API).
    config TEXT NOT NULL,
    -- JSON array of event types, e.g. ["job.failed", "agent.offline"].
    events TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX integrations_enabled ON integrations (tenant_id) WHERE enabled;

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- Exactly one of integration_id and schedule_id is set.
    integration_id TEXT REFERENCES integrations(id) ON DELETE CASCADE,
    schedule_id TEXT,
    -- NULL for a test delivery (POST /integrations/{id}/test).
    event_id TEXT,
    event_type TEXT NOT NULL,
    -- Masked (scheme://host/…): the full URL stays in the integration or schedule.
    target_url TEXT NOT NULL,
    -- pending | delivered | failed
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    last_response_code INTEGER,
    last_error TEXT,
    -- When a pending delivery is due (or its in-flight attempt's lease ends); NULL once finished.
    next_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- What is delivered: the event as JSON (each provider renders it at send time).
    payload TEXT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_integration ON deliveries (tenant_id, integration_id, id);
CREATE INDEX deliveries_schedule ON deliveries (tenant_id, schedule_id, id) WHERE schedule_id IS NOT NULL;

CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    response_code INTEGER,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- PagerDuty incidents ScriptMesh triggered and has not resolved yet, per dedup key.
CREATE TABLE integration_alerts (
    integration_id TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    dedup_key TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    PRIMARY KEY (integration_id, dedup_key)
);
