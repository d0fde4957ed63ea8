-- Live brokers: each broker process registers under its id and renews
-- heartbeat_ms (the database's clock) while it runs. `instance` tells a
-- restarted process from the one before it.
CREATE TABLE brokers (
    broker_id    BIGINT PRIMARY KEY,
    host         TEXT NOT NULL,
    port         BIGINT NOT NULL,
    instance     TEXT NOT NULL,
    started_ms   BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);

-- Leases: one broker at a time coordinates a consumer group or archives a
-- topic. A lease is valid while its holder (broker id and instance) is a
-- live broker, so renewing the broker's heartbeat renews all its leases.
CREATE TABLE leases (
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    holder      BIGINT NOT NULL,
    instance    TEXT NOT NULL,
    acquired_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
