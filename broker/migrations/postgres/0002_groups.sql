-- Consumer groups (classic protocol): the last completed generation and its
-- members with their assignments, so a group survives a broker restart.
CREATE TABLE consumer_groups (
    group_id      TEXT PRIMARY KEY,
    protocol_type TEXT NOT NULL DEFAULT '',
    protocol      TEXT,
    generation    BIGINT NOT NULL DEFAULT 0,
    leader        TEXT,
    members       TEXT NOT NULL DEFAULT '[]',
    updated_ms    BIGINT NOT NULL
);

CREATE TABLE group_offsets (
    group_id         TEXT NOT NULL,
    topic            TEXT NOT NULL,
    partition        BIGINT NOT NULL,
    committed_offset BIGINT NOT NULL,
    leader_epoch     BIGINT NOT NULL DEFAULT -1,
    metadata         TEXT,
    commit_ms        BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
