DROP INDEX jobs_tenant_created;
