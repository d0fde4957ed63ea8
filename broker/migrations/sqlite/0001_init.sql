-- Cluster-wide values: the cluster id and the producer id counter.
CREATE TABLE cluster (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE topics (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    uuid       TEXT NOT NULL,
    partitions INTEGER NOT NULL,
    configs    TEXT NOT NULL DEFAULT '{}',
    created_ms INTEGER NOT NULL
);

-- One row per partition: where the log starts and the next offset to assign.
-- Offsets are assigned by updating next_offset inside the append transaction.
CREATE TABLE partitions (
    topic_id    INTEGER NOT NULL REFERENCES topics(id) ON DELETE CASCADE,
    partition   INTEGER NOT NULL,
    log_start   INTEGER NOT NULL DEFAULT 0,
    next_offset INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);

-- Segments: bytes base..base+size of object `key` (a local log file holds
-- many segments; an object-store object holds one). Each segment holds the
-- batches of one flush, of many partitions.
CREATE TABLE segments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL,
    base       INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    UNIQUE (key, base)
);

-- The offset index: where each stored batch lives.
CREATE TABLE batches (
    topic_id      INTEGER NOT NULL,
    partition     INTEGER NOT NULL,
    base_offset   INTEGER NOT NULL,
    last_offset   INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL,
    segment_id    INTEGER NOT NULL REFERENCES segments(id),
    pos           INTEGER NOT NULL,
    len           INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
) WITHOUT ROWID;
CREATE INDEX batches_by_segment ON batches(segment_id);

-- Idempotent producers: the last batches seen per partition, for dedup.
CREATE TABLE producer_state (
    producer_id INTEGER NOT NULL,
    topic_id    INTEGER NOT NULL,
    partition   INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    recent      TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (producer_id, topic_id, partition)
);
