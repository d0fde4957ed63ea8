-- Transactions (KIP-98): one row per transactional.id, its producer id and
-- epoch, and where its current transaction stands. Any broker serves any
-- transactional id: every change is a conditional update of this row.
CREATE TABLE transactions (
    transactional_id TEXT PRIMARY KEY,
    producer_id      INTEGER NOT NULL,
    epoch            INTEGER NOT NULL,
    -- Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort.
    state            TEXT NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    -- When the current transaction took its first partition (0: none open).
    started_ms       INTEGER NOT NULL DEFAULT 0,
    updated_ms       INTEGER NOT NULL,
    -- Consumer groups whose offsets the current transaction commits (JSON).
    groups           TEXT NOT NULL DEFAULT '[]',
    -- Why the last transaction was aborted by the broker, if it was.
    aborted_by       TEXT
);
CREATE UNIQUE INDEX transactions_by_producer ON transactions(producer_id);

-- The partitions of open transactions. first_offset is the offset of the
-- transaction's first batch in the partition (null until one is stored):
-- the last stable offset of a partition is the least of them. ending is
-- set when EndTxn begins; from then on the producer may not append to the
-- partition, and the row goes when the marker is stored.
CREATE TABLE txn_partitions (
    topic_id         INTEGER NOT NULL,
    partition        INTEGER NOT NULL,
    producer_id      INTEGER NOT NULL,
    epoch            INTEGER NOT NULL,
    transactional_id TEXT NOT NULL,
    first_offset     INTEGER,
    ending           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition, producer_id)
);
CREATE INDEX txn_partitions_by_id ON txn_partitions(transactional_id);

-- Aborted transactions per partition, for read_committed fetches: the
-- producer's records from first_offset up to the abort marker at
-- last_offset are not to be shown.
CREATE TABLE txn_aborted (
    topic_id     INTEGER NOT NULL,
    partition    INTEGER NOT NULL,
    last_offset  INTEGER NOT NULL,
    producer_id  INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, last_offset)
);

-- Offsets committed inside a transaction: moved to group_offsets when it
-- commits, dropped when it aborts.
CREATE TABLE txn_offsets (
    transactional_id TEXT NOT NULL,
    group_id         TEXT NOT NULL,
    topic            TEXT NOT NULL,
    partition        INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL,
    leader_epoch     INTEGER NOT NULL DEFAULT -1,
    metadata         TEXT,
    PRIMARY KEY (transactional_id, group_id, topic, partition)
);
CREATE INDEX txn_offsets_by_group ON txn_offsets(group_id);

-- Segments kept beside a topic's table: batches the table does not hold
-- (transaction markers and aborted batches) keep their bytes here once the
-- rest of their segment is archived.
ALTER TABLE segments ADD COLUMN beside_table INTEGER NOT NULL DEFAULT 0;
CREATE INDEX segments_beside_table ON segments(id) WHERE beside_table = 1;
