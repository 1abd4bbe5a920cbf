-- A count of the changes to API keys that decide who may use them (revoked, expiry,
-- hash or tenant changed, deleted), by the API or by SQL behind its back. Each replica
-- reads it every second and forgets its cached keys when it moved
-- (orchestrator/src/auth/key_cache.rs): the backstop of the `key` notifications. A
-- key's use (last_used_at) does not count.
INSERT INTO settings (key, value) VALUES ('api_key_changes', '0') ON CONFLICT (key) DO NOTHING;
CREATE FUNCTION scriptmesh_count_key_changes() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE settings SET value = (value::bigint + 1)::text WHERE key = 'api_key_changes';
    RETURN NULL;
END $$;
CREATE TRIGGER api_keys_count_changes
    AFTER UPDATE OF revoked_at, expires_at, key_hash, tenant_id OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION scriptmesh_count_key_changes();
