DROP TRIGGER api_keys_count_deletes;
DROP TRIGGER api_keys_count_updates;
DELETE FROM settings WHERE key = 'api_key_changes';
