ALTER TABLE fanouts DROP COLUMN secret_params;
ALTER TABLE jobs DROP COLUMN secret_params;
DROP TABLE job_output;
