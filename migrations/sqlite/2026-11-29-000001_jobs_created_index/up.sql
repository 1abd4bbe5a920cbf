-- /metrics/json counts a tenant's jobs of the last 24 hours.
CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at);
