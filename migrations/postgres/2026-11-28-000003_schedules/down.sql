DROP INDEX jobs_schedule;
DROP TABLE schedule_runs;
DROP TABLE schedules;
