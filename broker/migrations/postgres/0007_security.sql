-- SCRAM credentials (RFC 5802): per user and mechanism, the salt, the
-- iteration count and the two derived keys (base64). Never a password.
CREATE TABLE scram_credentials (
    user_name  TEXT NOT NULL,
    mechanism  TEXT NOT NULL,
    salt       TEXT NOT NULL,
    iterations BIGINT NOT NULL,
    stored_key TEXT NOT NULL,
    server_key TEXT NOT NULL,
    PRIMARY KEY (user_name, mechanism)
);

-- Kafka ACLs, spelled as Kafka's tools print them: resource type TOPIC,
-- GROUP, CLUSTER or TRANSACTIONAL_ID; pattern LITERAL or PREFIXED;
-- principal `User:NAME` or `User:*`; host an address or `*`; operation
-- READ, WRITE, ...; permission ALLOW or DENY.
CREATE TABLE acls (
    resource_type TEXT NOT NULL,
    resource_name TEXT NOT NULL,
    pattern_type  TEXT NOT NULL,
    principal     TEXT NOT NULL,
    host          TEXT NOT NULL,
    operation     TEXT NOT NULL,
    permission    TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_name, pattern_type, principal, host, operation, permission)
);
