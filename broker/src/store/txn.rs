//! Transaction state in the metadata store (KIP-98): one row per
//! transactional id, the partitions of its open transaction, the offsets
//! that transaction commits, and the aborted transactions of each partition.
//!
//! Every change is a compare-and-set on the transactional id's row (its
//! producer id, epoch and state as last read), so any broker may serve any
//! transactional id and two brokers racing on one (a producer's EndTxn and
//! the timeout abort, say) cannot both win. What a partition's appends must
//! see (is this producer's transaction open here, where does it start) is
//! read and written inside the append transaction (`AppendTx::index` in
//! [`crate::store::meta`]).

use std::fmt;

use sqlx::Row;

use crate::store::meta::{MetaStore, Result, unix_ms};

/// Where a transactional id's current transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// No transaction yet since the producer was (re)initialized.
    Empty,
    Ongoing,
    /// EndTxn was asked: markers are being written.
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn parse(s: &str) -> Option<TxnState> {
        Some(match s {
            "Empty" => TxnState::Empty,
            "Ongoing" => TxnState::Ongoing,
            "PrepareCommit" => TxnState::PrepareCommit,
            "PrepareAbort" => TxnState::PrepareAbort,
            "CompleteCommit" => TxnState::CompleteCommit,
            "CompleteAbort" => TxnState::CompleteAbort,
            _ => return None,
        })
    }

    /// Markers are being written: the transaction is neither open nor done.
    pub fn is_ending(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

impl fmt::Display for TxnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One partition of an open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnPartition {
    pub topic_id: i64,
    pub partition: i32,
    /// Offset of the transaction's first batch there, once one is stored.
    pub first_offset: Option<i64>,
}

/// A transactional id as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub state: TxnState,
    pub timeout_ms: i32,
    /// When the open transaction took its first partition (0: none open).
    pub started_ms: i64,
    pub updated_ms: i64,
    pub groups: Vec<String>,
    pub partitions: Vec<TxnPartition>,
    /// Why the broker aborted the last transaction, if it did.
    pub aborted_by: Option<String>,
}

/// One offset committed inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOffset {
    pub group_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An aborted transaction of one partition, as Fetch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub last_offset: i64,
}

/// The row a compare-and-set expects to find.
fn expect_clause() -> &'static str {
    "transactional_id = $1 AND producer_id = $2 AND epoch = $3 AND state = $4"
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

fn record_from_row(r: &sqlx::any::AnyRow) -> TxnRecord {
    TxnRecord {
        transactional_id: r.get(0),
        producer_id: r.get(1),
        epoch: r.get::<i64, _>(2) as i16,
        state: TxnState::parse(r.get::<&str, _>(3)).unwrap_or(TxnState::Empty),
        timeout_ms: r.get::<i64, _>(4) as i32,
        started_ms: r.get(5),
        updated_ms: r.get(6),
        groups: serde_json::from_str(r.get::<&str, _>(7)).unwrap_or_default(),
        partitions: Vec::new(),
        aborted_by: r.get(8),
    }
}

const RECORD_COLUMNS: &str = "transactional_id, producer_id, epoch, state, timeout_ms, started_ms, updated_ms, groups, aborted_by";

/// What a compare-and-set on a transactional id's row changes.
#[derive(Debug, Clone, Default)]
pub struct TxnChange {
    pub producer_id: Option<i64>,
    pub epoch: Option<i16>,
    pub state: Option<TxnState>,
    pub timeout_ms: Option<i32>,
    pub started_ms: Option<i64>,
    pub groups: Option<Vec<String>>,
    /// `Some(None)` clears it.
    pub aborted_by: Option<Option<String>>,
}

impl MetaStore {
    /// One transactional id with the partitions of its open transaction.
    pub async fn txn(&self, transactional_id: &str) -> Result<Option<TxnRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM transactions WHERE transactional_id = $1"
        ))
        .bind(transactional_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut rec = record_from_row(&row);
        rec.partitions = self.txn_partitions(transactional_id).await?;
        Ok(Some(rec))
    }

    async fn txn_partitions(&self, transactional_id: &str) -> Result<Vec<TxnPartition>> {
        let rows = sqlx::query(
            "SELECT topic_id, partition, first_offset FROM txn_partitions
             WHERE transactional_id = $1 ORDER BY topic_id, partition",
        )
        .bind(transactional_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| TxnPartition {
                topic_id: r.get(0),
                partition: r.get::<i64, _>(1) as i32,
                first_offset: r.get(2),
            })
            .collect())
    }

    /// Every transactional id, with its open partitions, by id.
    pub async fn txns(&self) -> Result<Vec<TxnRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM transactions ORDER BY transactional_id"
        ))
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<TxnRecord> = rows.iter().map(record_from_row).collect();
        let parts = sqlx::query(
            "SELECT transactional_id, topic_id, partition, first_offset FROM txn_partitions
             ORDER BY transactional_id, topic_id, partition",
        )
        .fetch_all(self.pool())
        .await?;
        for r in parts {
            let id: String = r.get(0);
            if let Ok(i) = out.binary_search_by(|t| t.transactional_id.as_str().cmp(&id)) {
                out[i].partitions.push(TxnPartition {
                    topic_id: r.get(1),
                    partition: r.get::<i64, _>(2) as i32,
                    first_offset: r.get(3),
                });
            }
        }
        Ok(out)
    }

    /// The transactional id owning a producer id, if any.
    pub async fn txn_of_producer(&self, producer_id: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT transactional_id FROM transactions WHERE producer_id = $1")
            .bind(producer_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Stores a new transactional id; false if it exists already.
    pub async fn create_txn(&self, rec: &TxnRecord) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO transactions (transactional_id, producer_id, epoch, state, timeout_ms, started_ms, updated_ms, groups)
             VALUES ($1, $2, $3, $4, $5, 0, $6, '[]') ON CONFLICT (transactional_id) DO NOTHING",
        )
        .bind(&rec.transactional_id)
        .bind(rec.producer_id)
        .bind(rec.epoch as i64)
        .bind(rec.state.as_str())
        .bind(rec.timeout_ms as i64)
        .bind(unix_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Applies `change` to the row if it still is as `expected` was read.
    pub async fn update_txn(&self, expected: &TxnRecord, change: &TxnChange) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let ok = update_in(&mut tx, expected, change).await?;
        if ok {
            tx.commit().await?;
        }
        Ok(ok)
    }

    /// Adds partitions to the transaction (opening it if it was not), if
    /// the row is still as `expected`.
    pub async fn add_txn_partitions(
        &self,
        expected: &TxnRecord,
        partitions: &[(i64, i32)],
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let change = open_change(expected);
        if !update_in(&mut tx, expected, &change).await? {
            return Ok(false);
        }
        for (topic_id, partition) in partitions {
            sqlx::query(
                "INSERT INTO txn_partitions (topic_id, partition, producer_id, epoch, transactional_id, first_offset, ending)
                 VALUES ($1, $2, $3, $4, $5, NULL, 0)
                 ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET epoch = excluded.epoch, transactional_id = excluded.transactional_id",
            )
            .bind(topic_id)
            .bind(*partition as i64)
            .bind(expected.producer_id)
            .bind(expected.epoch as i64)
            .bind(&expected.transactional_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Adds a group to the transaction (opening it if it was not).
    pub async fn add_txn_group(&self, expected: &TxnRecord, group_id: &str) -> Result<bool> {
        let mut change = open_change(expected);
        let mut groups = expected.groups.clone();
        if !groups.iter().any(|g| g == group_id) {
            groups.push(group_id.to_string());
        }
        change.groups = Some(groups);
        self.update_txn(expected, &change).await
    }

    /// Stores offsets committed inside the open transaction.
    pub async fn put_txn_offsets(
        &self,
        expected: &TxnRecord,
        offsets: &[TxnOffset],
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        // A no-op change: the check (and row lock) that the transaction is
        // still the one the offsets belong to.
        if !update_in(&mut tx, expected, &TxnChange::default()).await? {
            return Ok(false);
        }
        for o in offsets {
            sqlx::query(
                "INSERT INTO txn_offsets (transactional_id, group_id, topic, partition, committed_offset, leader_epoch, metadata)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (transactional_id, group_id, topic, partition) DO UPDATE SET
                   committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch,
                   metadata = excluded.metadata",
            )
            .bind(&expected.transactional_id)
            .bind(&o.group_id)
            .bind(&o.topic)
            .bind(o.partition as i64)
            .bind(o.offset)
            .bind(o.leader_epoch as i64)
            .bind(&o.metadata)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Starts ending the transaction: the row moves to `state` (a Prepare
    /// state, with `change` besides) and its partitions take no more data.
    pub async fn begin_end_txn(&self, expected: &TxnRecord, change: &TxnChange) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        if !update_in(&mut tx, expected, change).await? {
            return Ok(false);
        }
        sqlx::query("UPDATE txn_partitions SET ending = 1 WHERE transactional_id = $1")
            .bind(&expected.transactional_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Finishes a transaction whose markers are all stored: its offsets
    /// become the groups' committed offsets (commit) or are dropped
    /// (abort), and the row moves to the Complete state.
    pub async fn complete_txn(&self, expected: &TxnRecord, commit: bool) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let change = TxnChange {
            state: Some(if commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            }),
            started_ms: Some(0),
            groups: Some(Vec::new()),
            ..TxnChange::default()
        };
        if !update_in(&mut tx, expected, &change).await? {
            return Ok(false);
        }
        if commit {
            sqlx::query(
                "INSERT INTO group_offsets (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_ms)
                 SELECT group_id, topic, partition, committed_offset, leader_epoch, metadata, $2
                 FROM txn_offsets WHERE transactional_id = $1
                 ON CONFLICT (group_id, topic, partition) DO UPDATE SET
                   committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch,
                   metadata = excluded.metadata, commit_ms = excluded.commit_ms",
            )
            .bind(&expected.transactional_id)
            .bind(unix_ms())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM txn_offsets WHERE transactional_id = $1")
            .bind(&expected.transactional_id)
            .execute(&mut *tx)
            .await?;
        // Partitions that never took a batch need no marker (and those
        // that did lost their row when it was stored, unless deleted since).
        sqlx::query("DELETE FROM txn_partitions WHERE transactional_id = $1")
            .bind(&expected.transactional_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The partitions of `group` with offsets waiting in an open
    /// transaction (OffsetFetch's require_stable answers UNSTABLE for them).
    pub async fn pending_txn_offsets(&self, group_id: &str) -> Result<Vec<(String, i32)>> {
        let rows = sqlx::query("SELECT topic, partition FROM txn_offsets WHERE group_id = $1")
            .bind(group_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<i64, _>(1) as i32))
            .collect())
    }

    /// Aborted transactions of a partition whose range reaches into
    /// `from..to` (what a read_committed fetch of those offsets must skip).
    pub async fn aborted_txns(
        &self,
        topic_id: i64,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<AbortedTxn>> {
        let rows = sqlx::query(
            "SELECT producer_id, first_offset, last_offset FROM txn_aborted
             WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 AND first_offset < $4
             ORDER BY first_offset",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| AbortedTxn {
                producer_id: r.get(0),
                first_offset: r.get(1),
                last_offset: r.get(2),
            })
            .collect())
    }
}

/// The change that opens the transaction if it is not open yet.
fn open_change(expected: &TxnRecord) -> TxnChange {
    if expected.state == TxnState::Ongoing {
        TxnChange::default()
    } else {
        TxnChange {
            state: Some(TxnState::Ongoing),
            started_ms: Some(unix_ms()),
            groups: Some(Vec::new()),
            aborted_by: Some(None),
            ..TxnChange::default()
        }
    }
}

async fn update_in(tx: &mut Tx, expected: &TxnRecord, change: &TxnChange) -> Result<bool> {
    let mut sets = vec!["updated_ms = $5".to_string()];
    let mut n = 5;
    let mut next = |col: &str, sets: &mut Vec<String>| {
        n += 1;
        sets.push(format!("{col} = ${n}"));
    };
    if change.producer_id.is_some() {
        next("producer_id", &mut sets);
    }
    if change.epoch.is_some() {
        next("epoch", &mut sets);
    }
    if change.state.is_some() {
        next("state", &mut sets);
    }
    if change.timeout_ms.is_some() {
        next("timeout_ms", &mut sets);
    }
    if change.started_ms.is_some() {
        next("started_ms", &mut sets);
    }
    if change.groups.is_some() {
        next("groups", &mut sets);
    }
    if change.aborted_by.is_some() {
        next("aborted_by", &mut sets);
    }
    let sql = format!(
        "UPDATE transactions SET {} WHERE {}",
        sets.join(", "),
        expect_clause()
    );
    let mut q = sqlx::query(&sql)
        .bind(&expected.transactional_id)
        .bind(expected.producer_id)
        .bind(expected.epoch as i64)
        .bind(expected.state.as_str())
        .bind(unix_ms());
    if let Some(v) = change.producer_id {
        q = q.bind(v);
    }
    if let Some(v) = change.epoch {
        q = q.bind(v as i64);
    }
    if let Some(v) = change.state {
        q = q.bind(v.as_str());
    }
    if let Some(v) = change.timeout_ms {
        q = q.bind(v as i64);
    }
    if let Some(v) = change.started_ms {
        q = q.bind(v);
    }
    if let Some(v) = &change.groups {
        q = q.bind(serde_json::to_string(v).unwrap_or_else(|_| "[]".into()));
    }
    if let Some(v) = &change.aborted_by {
        q = q.bind(v.clone());
    }
    Ok(q.execute(&mut **tx).await?.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meta::{Appended, NewBatch, ProducerUpdate, TxnPart};
    use crate::store::objects::SegmentLoc;
    use crate::store::topic_config::TopicConfig;
    use kafka_protocol::error::ResponseError;

    fn batch(topic_id: i64, seq: i32, epoch: i16, txn: Option<TxnPart>) -> NewBatch {
        NewBatch {
            topic_id,
            partition: 0,
            offsets: 10,
            max_timestamp: 0,
            pos: 0,
            len: 100,
            producer: Some(ProducerUpdate {
                producer_id: 7,
                epoch,
                first_seq: seq,
                last_seq: seq + 9,
            }),
            txn,
        }
    }

    fn segment() -> SegmentLoc {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        SegmentLoc {
            key: format!(
                "test-{}",
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            base: 0,
            size: 100,
        }
    }

    async fn index(meta: &MetaStore, batches: &[NewBatch]) -> Vec<Appended> {
        let mut tx = meta.begin_append().await.unwrap();
        let (out, _) = tx.index(&segment(), batches).await.unwrap();
        tx.commit().await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_retry_through_a_broker_with_a_stale_cache_is_answered_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::connect(&format!("sqlite://{}/meta.db", dir.path().display()))
            .await
            .unwrap();
        let t = meta
            .create_topic("t", 1, &TopicConfig::default())
            .await
            .unwrap();
        assert_eq!(
            index(&meta, &[batch(t.id, 0, 0, None)]).await,
            vec![Appended::Ok {
                base_offset: 0,
                log_start: 0
            }]
        );
        // The same sequences again (another broker never saw the first):
        // answered with the stored offset, and nothing more is stored.
        assert_eq!(
            index(&meta, &[batch(t.id, 0, 0, None)]).await,
            vec![Appended::Duplicate { base_offset: 0 }]
        );
        assert!(matches!(
            index(&meta, &[batch(t.id, 20, 0, None)]).await[..],
            [Appended::Refused {
                error: ResponseError::OutOfOrderSequenceNumber,
                ..
            }]
        ));
        assert_eq!(
            index(&meta, &[batch(t.id, 10, 0, None)]).await,
            vec![Appended::Ok {
                base_offset: 10,
                log_start: 0
            }]
        );
        assert_eq!(
            meta.partition_offsets(t.id, 0)
                .await
                .unwrap()
                .unwrap()
                .next_offset,
            20
        );
    }

    #[tokio::test]
    async fn transactional_batches_need_an_open_transaction_and_markers_close_it() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::connect(&format!("sqlite://{}/meta.db", dir.path().display()))
            .await
            .unwrap();
        let t = meta
            .create_topic("t", 1, &TopicConfig::default())
            .await
            .unwrap();
        let data = Some(TxnPart::Data {
            producer_id: 7,
            epoch: 0,
        });
        // Not added to a transaction: refused.
        assert!(matches!(
            index(&meta, &[batch(t.id, 0, 0, data)]).await[..],
            [Appended::Refused {
                error: ResponseError::InvalidTxnState,
                ..
            }]
        ));
        let rec = TxnRecord {
            transactional_id: "tx".into(),
            producer_id: 7,
            epoch: 0,
            state: TxnState::Empty,
            timeout_ms: 60_000,
            started_ms: 0,
            updated_ms: 0,
            groups: vec![],
            partitions: vec![],
            aborted_by: None,
        };
        assert!(meta.create_txn(&rec).await.unwrap());
        assert!(meta.add_txn_partitions(&rec, &[(t.id, 0)]).await.unwrap());
        assert!(matches!(
            index(&meta, &[batch(t.id, 0, 0, data)]).await[..],
            [Appended::Ok { base_offset: 0, .. }]
        ));
        let offsets = meta.partition_offsets(t.id, 0).await.unwrap().unwrap();
        assert_eq!((offsets.next_offset, offsets.last_stable), (10, 0));

        // Ending: no more data; the abort marker closes it and records the range.
        let open = meta.txn("tx").await.unwrap().unwrap();
        let ending = TxnChange {
            state: Some(TxnState::PrepareAbort),
            ..TxnChange::default()
        };
        assert!(meta.begin_end_txn(&open, &ending).await.unwrap());
        assert!(matches!(
            index(&meta, &[batch(t.id, 10, 0, data)]).await[..],
            [Appended::Refused {
                error: ResponseError::InvalidTxnState,
                ..
            }]
        ));
        let mut marker = batch(t.id, 0, 0, None);
        marker.producer = None;
        marker.offsets = 1;
        marker.txn = Some(TxnPart::Marker {
            producer_id: 7,
            epoch: 0,
            commit: false,
        });
        assert!(matches!(
            index(&meta, &[marker]).await[..],
            [Appended::Ok {
                base_offset: 10,
                ..
            }]
        ));
        let offsets = meta.partition_offsets(t.id, 0).await.unwrap().unwrap();
        assert_eq!((offsets.next_offset, offsets.last_stable), (11, 11));
        assert_eq!(
            meta.aborted_txns(t.id, 0, 0, 11).await.unwrap(),
            vec![AbortedTxn {
                producer_id: 7,
                first_offset: 0,
                last_offset: 10
            }]
        );
        let mut ending = open.clone();
        ending.state = TxnState::PrepareAbort;
        assert!(meta.complete_txn(&ending, false).await.unwrap());
        assert_eq!(
            meta.txn("tx").await.unwrap().unwrap().state,
            TxnState::CompleteAbort
        );
        // A second completion (a racing broker) loses the compare-and-set.
        assert!(!meta.complete_txn(&ending, false).await.unwrap());
    }
}
