-- A count of the changes to API keys that decide who may use them (revoked, expiry,
-- hash or tenant changed, deleted), by the API or by SQL behind its back. Each
-- orchestrator reads it every second and forgets its cached keys when it moved
-- (orchestrator/src/auth/key_cache.rs). A key's use (last_used_at) does not count.
INSERT INTO settings (key, value) VALUES ('api_key_changes', '0') ON CONFLICT (key) DO NOTHING;
CREATE TRIGGER api_keys_count_updates AFTER UPDATE OF revoked_at, expires_at, key_hash, tenant_id ON api_keys
BEGIN
    UPDATE settings SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'api_key_changes';
END;
CREATE TRIGGER api_keys_count_deletes AFTER DELETE ON api_keys
BEGIN
    UPDATE settings SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'api_key_changes';
END;
