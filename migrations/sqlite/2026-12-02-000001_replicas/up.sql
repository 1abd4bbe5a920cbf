-- The PostgreSQL migration of the same name adds the notification triggers replicas
-- need; SQLite runs one orchestrator process, so it gets only the indexes.
CREATE INDEX jobs_pending ON jobs (tenant_id, agent_name) WHERE status = 'pending';
CREATE INDEX schedules_updated ON schedules (updated_at);
CREATE INDEX agents_updated ON agents (updated_at);
