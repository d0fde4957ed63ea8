-- Client quotas (Kafka's KIP-546 API): one row per entity and quota key.
-- The entity is a JSON array of [type, name] pairs sorted by type, with
-- null for the default entity, e.g. [["client-id",null],["user","alice"]].
CREATE TABLE client_quotas (
    entity    TEXT NOT NULL,
    quota_key TEXT NOT NULL,
    value     REAL NOT NULL,
    PRIMARY KEY (entity, quota_key)
);
