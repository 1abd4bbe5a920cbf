DROP INDEX jobs_awaiting_slot;
ALTER TABLE jobs DROP COLUMN awaiting_slot;
ALTER TABLE fanouts DROP COLUMN max_errors;
ALTER TABLE fanouts DROP COLUMN max_concurrency;
