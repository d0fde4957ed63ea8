-- Consumer groups (classic protocol): the last completed generation and its
-- members with their assignments, so a group survives a broker restart.
CREATE TABLE consumer_groups (
    group_id      TEXT PRIMARY KEY,
    protocol_type TEXT NOT NULL DEFAULT '',
    protocol      TEXT,
    generation    INTEGER NOT NULL DEFAULT 0,
    leader        TEXT,
    members       TEXT NOT NULL DEFAULT '[]',
    updated_ms    INTEGER NOT NULL
);

CREATE TABLE group_offsets (
    group_id         TEXT NOT NULL,
    topic            TEXT NOT NULL,
    partition        INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL,
    leader_epoch     INTEGER NOT NULL DEFAULT -1,
    metadata         TEXT,
    commit_ms        INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
