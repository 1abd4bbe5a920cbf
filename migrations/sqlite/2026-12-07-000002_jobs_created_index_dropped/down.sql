CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at);
