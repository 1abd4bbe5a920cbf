DROP TRIGGER job_output_notify ON job_output;
DROP FUNCTION scriptmesh_notify_output();
ALTER TABLE fanouts DROP COLUMN secret_params;
ALTER TABLE jobs DROP COLUMN secret_params;
DROP TABLE job_output;
