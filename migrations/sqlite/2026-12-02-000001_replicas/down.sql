DROP INDEX agents_updated;
DROP INDEX schedules_updated;
DROP INDEX jobs_pending;
