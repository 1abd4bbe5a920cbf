DROP TRIGGER api_keys_count_changes ON api_keys;
DROP FUNCTION scriptmesh_count_key_changes();
DELETE FROM settings WHERE key = 'api_key_changes';
