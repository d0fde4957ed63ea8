-- SCRAM credentials (RFC 5802 / KIP-554): only the salt, the iteration
-- count and the derived keys are kept, never the password.
CREATE TABLE scram_credentials (
    user_name  TEXT NOT NULL,
    mechanism  TEXT NOT NULL,
    salt       TEXT NOT NULL,
    iterations BIGINT NOT NULL,
    stored_key TEXT NOT NULL,
    server_key TEXT NOT NULL,
    PRIMARY KEY (user_name, mechanism)
);

-- Kafka ACL bindings; the numeric columns hold the protocol's codes
-- (resource type, pattern type, operation, permission type).
CREATE TABLE acls (
    resource_type BIGINT NOT NULL,
    resource_name TEXT NOT NULL,
    pattern_type  BIGINT NOT NULL,
    principal     TEXT NOT NULL,
    host          TEXT NOT NULL,
    operation     BIGINT NOT NULL,
    permission    BIGINT NOT NULL,
    PRIMARY KEY (resource_type, resource_name, pattern_type, principal, host, operation, permission)
);

-- Purposes a principal may declare, granted by an administrator (on top of
-- the grants of the policy file).
CREATE TABLE purpose_grants (
    principal TEXT NOT NULL,
    purpose   TEXT NOT NULL,
    PRIMARY KEY (principal, purpose)
);

-- Bearer tokens of the HTTP interfaces, kept as SHA-256 digests.
CREATE TABLE http_tokens (
    token_sha256 TEXT PRIMARY KEY,
    principal    TEXT NOT NULL,
    created_ms   BIGINT NOT NULL
);

-- Each broker's listeners, `NAME=HOST:PORT` separated by commas, so a
-- client is given the addresses of the listener it connected to.
ALTER TABLE brokers ADD COLUMN listeners TEXT NOT NULL DEFAULT '';
