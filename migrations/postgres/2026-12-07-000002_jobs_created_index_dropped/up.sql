-- Recent jobs (the 24 hours of /metrics/json) are found through jobs_tenant (tenant_id, id)
-- from a bound on their time-ordered ids (orchestrator/src/db/mod.rs: id_floor), so this
-- index no longer earns the entry it cost every insert, claim and result of a job.
DROP INDEX jobs_tenant_created;
