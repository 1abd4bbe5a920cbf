-- Least privilege: a user may belong to several tenants, each with a role; teammates are
-- invited by email; passwords can be reset; API keys carry a role and a scope; the audit
-- log says who did what to what, and whether it was allowed.

-- Roles live in memberships. users.tenant_id stays the tenant the user first joined.
CREATE TABLE memberships (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);
INSERT INTO memberships (tenant_id, user_id, role, created_at)
    SELECT tenant_id, id, role, created_at FROM users;
ALTER TABLE users DROP COLUMN role;

-- One open invitation per tenant and address; the code is emailed, stored hashed.
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    invited_by TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX invitations_tenant_email ON invitations (tenant_id, email);

CREATE TABLE password_resets (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- Keys made before roles could do everything but manage keys: they become admin keys, so
-- nothing that works today breaks. scope: JSON {"agents": [...], "tags": [...], "scripts": [...]}.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE api_keys ADD COLUMN scope TEXT;
-- A change of role or scope by SQL must reach the key caches too.
DROP TRIGGER api_keys_count_changes ON api_keys;
CREATE TRIGGER api_keys_count_changes
    AFTER UPDATE OF revoked_at, expires_at, key_hash, tenant_id, role, scope OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION scriptmesh_count_key_changes();

-- The audit log: actor (who, as shown), action, target, outcome.
ALTER TABLE audit_log RENAME COLUMN event TO action;
ALTER TABLE audit_log ADD COLUMN actor TEXT;
ALTER TABLE audit_log ADD COLUMN actor_id TEXT;
ALTER TABLE audit_log ADD COLUMN target TEXT;
ALTER TABLE audit_log ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok';
UPDATE audit_log SET action = CASE action
    WHEN 'user.registered' THEN 'user.register'
    WHEN 'email.verified' THEN 'user.verify_email'
    WHEN 'login.succeeded' THEN 'user.login'
    WHEN 'login.failed' THEN 'user.login'
    WHEN 'refresh_token.reused' THEN 'session.reuse'
    WHEN 'api_key.created' THEN 'key.create'
    WHEN 'api_key.revoked' THEN 'key.revoke'
    ELSE action END,
    outcome = CASE WHEN action IN ('login.failed', 'refresh_token.reused') THEN 'denied' ELSE 'ok' END;
UPDATE audit_log SET actor = users.email, actor_id = users.id FROM users WHERE users.id = audit_log.user_id;
DROP INDEX audit_log_tenant;
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
