DROP TABLE settings;
DROP TABLE audit_log;
DROP TABLE api_keys;
DROP TABLE refresh_tokens;
DROP TABLE email_codes;
DROP TABLE users;
DROP TABLE tenants;
