DROP INDEX audit_log_tenant;
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, created_at);
ALTER TABLE audit_log DROP COLUMN outcome;
ALTER TABLE audit_log DROP COLUMN target;
ALTER TABLE audit_log DROP COLUMN actor_id;
ALTER TABLE audit_log DROP COLUMN actor;
ALTER TABLE audit_log RENAME COLUMN action TO event;
DROP TRIGGER api_keys_count_changes ON api_keys;
CREATE TRIGGER api_keys_count_changes
    AFTER UPDATE OF revoked_at, expires_at, key_hash, tenant_id OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION scriptmesh_count_key_changes();
ALTER TABLE api_keys DROP COLUMN scope;
ALTER TABLE api_keys DROP COLUMN role;
DROP TABLE password_resets;
DROP TABLE invitations;
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'owner';
UPDATE users SET role = COALESCE((SELECT role FROM memberships m WHERE m.user_id = users.id AND m.tenant_id = users.tenant_id), 'owner');
DROP TABLE memberships;
