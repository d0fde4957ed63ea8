//! The metadata store: topics, partition offsets, the offset index, segments
//! and idempotent-producer state.
//!
//! Contract every backend keeps:
//! - `commit_append` is one transaction. Offsets are assigned by advancing the
//!   partition's `next_offset` inside it, so appends from any number of
//!   brokers sharing the store never collide or reorder, and a batch becomes
//!   visible (to fetch, ListOffsets, the high watermark) exactly when its
//!   transaction commits.
//! - The segment object a batch points to is written before the transaction
//!   that records it commits; a crash in between leaves an unreferenced
//!   object, which garbage collection removes, never an index row without
//!   data.
//!
//! The embedded backend is SQLite in WAL mode. Its commits survive a killed
//! process (the WAL is written before the commit returns); `synchronous=FULL`
//! also makes them survive power loss.

use std::collections::{BTreeSet, HashMap};

use kafka_protocol::error::ResponseError;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use uuid::Uuid;

use crate::store::objects::SegmentLoc;
use crate::store::topic_config::TopicConfig;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database failed or is unreachable; the operation may be retried.
    /// (Not a `#[source]`: the message already carries it, and error
    /// chains printed with `{:#}` would repeat it.)
    #[error("metadata store error: {0}")]
    Db(sqlx::Error),
    /// Schema migration failed at startup.
    #[error("metadata store migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
}

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> MetaError {
        MetaError::Db(e)
    }
}

impl From<sqlx::migrate::MigrateError> for MetaError {
    fn from(e: sqlx::migrate::MigrateError) -> MetaError {
        MetaError::Migrate(e)
    }
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq)]
pub struct TopicRecord {
    pub id: i64,
    pub name: String,
    pub uuid: Uuid,
    pub partitions: i32,
    pub config: TopicConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: i64,
    /// The high watermark: one past the last committed offset.
    pub next_offset: i64,
    /// The last stable offset: the first offset of the oldest open
    /// transaction, or the high watermark when none is open.
    pub last_stable: i64,
}

/// The segment key of batches whose records live in their topic's table.
pub const LAKE_SEGMENT: &str = "@lake";

/// Where one stored batch lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLoc {
    pub topic_id: i64,
    pub partition: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub segment_id: i64,
    pub segment: SegmentLoc,
    pub pos: i64,
    pub len: i64,
}

/// A batch whose table holds none of its records (a transaction marker, a
/// batch of an aborted transaction): it keeps its bytes in a segment of its
/// own beside the table, at `pos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptBatch {
    pub partition: i32,
    pub base_offset: i64,
    pub pos: i64,
    pub len: i64,
}

/// One batch to index in an append.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub topic_id: i64,
    pub partition: i32,
    /// Offsets the batch takes: its last offset delta + 1, which is more
    /// than its record count when records were taken out of it.
    pub offsets: i64,
    pub max_timestamp: i64,
    pub pos: i64,
    pub len: i64,
    /// Idempotent-producer state to store with the batch, if any.
    pub producer: Option<ProducerUpdate>,
    /// The batch's part in a transaction, if it has one.
    pub txn: Option<TxnPart>,
}

/// What a batch does in its producer's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnPart {
    /// Records of the producer's open transaction.
    Data { producer_id: i64, epoch: i16 },
    /// The commit or abort marker that ends it on the partition, written
    /// with the producer's current epoch.
    Marker {
        producer_id: i64,
        epoch: i16,
        commit: bool,
    },
}

#[derive(Debug, Clone)]
pub struct ProducerUpdate {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

/// The last few batches of one producer on one partition (Kafka keeps five).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerPartitionState {
    pub epoch: i16,
    /// (first sequence, last sequence, base offset), oldest first.
    pub recent: Vec<(i32, i32, i64)>,
}

pub const PRODUCER_RECENT_BATCHES: usize = 5;

/// One idempotent producer of a partition, as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    /// Sequence number of its last batch's last record.
    pub last_sequence: i32,
    /// When its last batch was stored (Unix ms).
    pub last_timestamp: i64,
    /// First offset of its open transaction on the partition, or -1.
    pub txn_start_offset: i64,
}

/// (producer id, topic id, partition).
pub type ProducerKey = (i64, i64, i32);

/// Result of indexing one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Ok {
        base_offset: i64,
        log_start: i64,
    },
    /// A retry of a batch stored before (perhaps through another broker),
    /// at this offset.
    Duplicate {
        base_offset: i64,
    },
    /// Not stored: the producer's state does not allow it.
    Refused {
        error: ResponseError,
        message: String,
    },
    UnknownPartition,
}

/// The decision on an idempotent batch, against its producer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCheck {
    Accept,
    /// A batch with these sequences is stored (at this offset) or, with
    /// -1, still being stored.
    Duplicate(i64),
    Reject(ResponseError, String),
}

/// Decides an idempotent batch against its producer's last batches on the
/// partition, as Kafka does: an older epoch is fenced, a new epoch starts at
/// sequence 0, a batch with the sequences of a recent one is a duplicate,
/// and any other must follow the last one.
pub fn check_sequence(state: Option<&ProducerPartitionState>, u: &ProducerUpdate) -> SequenceCheck {
    let Some(state) = state else {
        // No history for this producer here (new, or expired): accept.
        return SequenceCheck::Accept;
    };
    if u.epoch < state.epoch {
        return SequenceCheck::Reject(
            ResponseError::InvalidProducerEpoch,
            format!(
                "producer {} epoch {} is older than the current epoch {}",
                u.producer_id, u.epoch, state.epoch
            ),
        );
    }
    if u.epoch > state.epoch {
        if u.first_seq != 0 {
            return SequenceCheck::Reject(
                ResponseError::OutOfOrderSequenceNumber,
                format!(
                    "new epoch {} of producer {} must start at sequence 0, got {}",
                    u.epoch, u.producer_id, u.first_seq
                ),
            );
        }
        return SequenceCheck::Accept;
    }
    if let Some(&(_, _, base)) = state
        .recent
        .iter()
        .find(|(first, last, _)| *first == u.first_seq && *last == u.last_seq)
    {
        return SequenceCheck::Duplicate(base);
    }
    let expected = match state.recent.last() {
        Some(&(_, last, _)) if last == i32::MAX => 0,
        Some(&(_, last, _)) => last + 1,
        None => u.first_seq,
    };
    if u.first_seq != expected {
        return SequenceCheck::Reject(
            ResponseError::OutOfOrderSequenceNumber,
            format!(
                "producer {} sent sequence {} but {} was expected",
                u.producer_id, u.first_seq, expected
            ),
        );
    }
    SequenceCheck::Accept
}

#[derive(Clone)]
pub struct MetaStore {
    pool: AnyPool,
    backend: Backend,
}

/// Which database holds the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, one machine (the embedded default).
    Sqlite,
    /// Shared by any number of brokers.
    Postgres,
}

impl Backend {
    /// SQL for the database server's clock in Unix milliseconds. Leases
    /// and heartbeats are compared on this one clock, never on the brokers'
    /// own, so clock skew between brokers cannot expire a live lease.
    pub fn now_ms_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Settings of every SQLite connection. Checkpoints (which fsync) run from
/// a background task instead of inside whichever append commit happens to
/// cross the threshold, hence no automatic checkpoints.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA busy_timeout = 10000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA wal_autocheckpoint = 0",
];

impl MetaStore {
    /// Opens (creating if needed) the store and applies pending migrations.
    ///
    /// `url` is `sqlite://PATH` (the embedded default) or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (many brokers).
    pub async fn connect(url: &str) -> Result<MetaStore> {
        sqlx::any::install_default_drivers();
        if let Some(path) = url.strip_prefix("sqlite://") {
            Self::connect_sqlite(path).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url).await
        } else {
            Err(MetaError::Db(sqlx::Error::Configuration(
                format!(
                    "unsupported metadata URL '{url}': expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
                )
                .into(),
            )))
        }
    }

    async fn connect_sqlite(path: &str) -> Result<MetaStore> {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| MetaError::Db(sqlx::Error::Io(e)))?;
        }
        // The generic pool takes only a URL, so the per-connection settings
        // are applied as pragmas when each connection opens.
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in SQLITE_PRAGMAS {
                        sqlx::Executor::execute(&mut *conn, *pragma).await?;
                    }
                    Ok(())
                })
            })
            .connect(&format!("sqlite://{path}?mode=rwc"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let store = MetaStore {
            pool,
            backend: Backend::Sqlite,
        };
        store.ensure_cluster_id().await?;
        Ok(store)
    }

    async fn connect_postgres(url: &str) -> Result<MetaStore> {
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // Brokers starting together do not race: the migrator holds a
        // database-wide advisory lock while it runs.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = MetaStore {
            pool,
            backend: Backend::Postgres,
        };
        store.ensure_cluster_id().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn ensure_cluster_id(&self) -> Result<()> {
        let id = Uuid::new_v4().simple().to_string();
        sqlx::query("INSERT INTO cluster (key, value) VALUES ('cluster_id', $1) ON CONFLICT (key) DO NOTHING")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The connection pool, for stores of other crates' data kept in the
    /// same database (the schema registry).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn cluster_id(&self) -> Result<String> {
        let row = sqlx::query("SELECT value FROM cluster WHERE key = 'cluster_id'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
    }

    fn topic_from_row(row: &AnyRow) -> TopicRecord {
        let uuid: String = row.get("uuid");
        TopicRecord {
            id: row.get("id"),
            name: row.get("name"),
            uuid: Uuid::parse_str(&uuid).unwrap_or_default(),
            partitions: row.get::<i64, _>("partitions") as i32,
            config: TopicConfig::from_json(row.get::<&str, _>("configs")),
        }
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicRecord>> {
        let rows =
            sqlx::query("SELECT id, name, uuid, partitions, configs FROM topics ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(Self::topic_from_row).collect())
    }

    pub async fn topic(&self, name: &str) -> Result<Option<TopicRecord>> {
        let row =
            sqlx::query("SELECT id, name, uuid, partitions, configs FROM topics WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(Self::topic_from_row))
    }

    pub async fn topic_by_uuid(&self, uuid: Uuid) -> Result<Option<TopicRecord>> {
        let row =
            sqlx::query("SELECT id, name, uuid, partitions, configs FROM topics WHERE uuid = $1")
                .bind(uuid.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(Self::topic_from_row))
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: &TopicConfig,
    ) -> Result<TopicRecord> {
        let mut tx = self.pool.begin().await?;
        let uuid = Uuid::new_v4();
        let inserted = sqlx::query(
            "INSERT INTO topics (name, uuid, partitions, configs, created_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(uuid.to_string())
        .bind(partitions as i64)
        .bind(config.to_json())
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = inserted else {
            return Err(MetaError::TopicExists(name.to_string()));
        };
        let id: i64 = row.get(0);
        for p in 0..partitions {
            sqlx::query("INSERT INTO partitions (topic_id, partition) VALUES ($1, $2)")
                .bind(id)
                .bind(p as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(TopicRecord {
            id,
            name: name.to_string(),
            uuid,
            partitions,
            config: config.clone(),
        })
    }

    /// Deletes a topic and its index; its segment data is collected later.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicRecord> {
        let topic = self
            .topic(name)
            .await?
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM batches WHERE topic_id = $1",
            "DELETE FROM producer_state WHERE topic_id = $1",
            "DELETE FROM partitions WHERE topic_id = $1",
            "DELETE FROM topics WHERE id = $1",
        ] {
            sqlx::query(sql).bind(topic.id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(topic)
    }

    pub async fn add_partitions(&self, name: &str, new_total: i32) -> Result<TopicRecord> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT id, partitions FROM topics WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        let id: i64 = row.get(0);
        let current = row.get::<i64, _>(1) as i32;
        if new_total <= current {
            return Err(MetaError::InvalidPartitions(format!(
                "topic '{name}' has {current} partitions; the new count {new_total} must be larger"
            )));
        }
        for p in current..new_total {
            sqlx::query("INSERT INTO partitions (topic_id, partition) VALUES ($1, $2)")
                .bind(id)
                .bind(p as i64)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE topics SET partitions = $1 WHERE id = $2")
            .bind(new_total as i64)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.topic(name)
            .await?
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))
    }

    pub async fn set_topic_config(&self, name: &str, config: &TopicConfig) -> Result<()> {
        let done = sqlx::query("UPDATE topics SET configs = $1 WHERE name = $2")
            .bind(config.to_json())
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::UnknownTopic(name.to_string()));
        }
        Ok(())
    }

    pub async fn partition_offsets(
        &self,
        topic_id: i64,
        partition: i32,
    ) -> Result<Option<PartitionOffsets>> {
        let row = sqlx::query(
            "SELECT p.log_start, p.next_offset,
                    (SELECT MIN(t.first_offset) FROM txn_partitions t
                     WHERE t.topic_id = p.topic_id AND t.partition = p.partition)
             FROM partitions p WHERE p.topic_id = $1 AND p.partition = $2",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            let next_offset: i64 = r.get(1);
            PartitionOffsets {
                log_start: r.get(0),
                next_offset,
                last_stable: r.get::<Option<i64>, _>(2).unwrap_or(next_offset),
            }
        }))
    }

    fn loc_from_row(r: &AnyRow) -> BatchLoc {
        BatchLoc {
            topic_id: r.get(9),
            partition: r.get::<i64, _>(10) as i32,
            base_offset: r.get(0),
            last_offset: r.get(1),
            max_timestamp: r.get(2),
            segment_id: r.get(3),
            segment: SegmentLoc {
                key: r.get(4),
                base: r.get::<i64, _>(7) as u64,
                size: r.get::<i64, _>(8) as u64,
            },
            pos: r.get(5),
            len: r.get(6),
        }
    }

    /// Batches holding `offset` and after it, in offset order.
    pub async fn batches_from(
        &self,
        topic_id: i64,
        partition: i32,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<BatchLoc>> {
        let rows = sqlx::query(
            "SELECT b.base_offset, b.last_offset, b.max_timestamp, b.segment_id, s.key, b.pos, b.len, s.base, s.size, b.topic_id, b.partition
             FROM batches b JOIN segments s ON s.id = b.segment_id
             WHERE b.topic_id = $1 AND b.partition = $2 AND b.base_offset >= COALESCE(
                 (SELECT MAX(base_offset) FROM batches
                  WHERE topic_id = $1 AND partition = $2 AND base_offset <= $3), 0)
               AND b.last_offset >= $3
             ORDER BY b.base_offset LIMIT $4",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .bind(offset)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(Self::loc_from_row).collect())
    }

    /// The first batch (in offset order) whose max timestamp is at least `ts`.
    pub async fn first_batch_at_or_after(
        &self,
        topic_id: i64,
        partition: i32,
        ts: i64,
        from_offset: i64,
    ) -> Result<Option<BatchLoc>> {
        let row = sqlx::query(
            "SELECT b.base_offset, b.last_offset, b.max_timestamp, b.segment_id, s.key, b.pos, b.len, s.base, s.size, b.topic_id, b.partition
             FROM batches b JOIN segments s ON s.id = b.segment_id
             WHERE b.topic_id = $1 AND b.partition = $2 AND b.max_timestamp >= $3 AND b.last_offset >= $4
             ORDER BY b.base_offset LIMIT 1",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .bind(ts)
        .bind(from_offset)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Self::loc_from_row))
    }

    /// The batch holding the largest timestamp (first such batch on ties).
    pub async fn max_timestamp_batch(
        &self,
        topic_id: i64,
        partition: i32,
        from_offset: i64,
    ) -> Result<Option<BatchLoc>> {
        let row = sqlx::query(
            "SELECT b.base_offset, b.last_offset, b.max_timestamp, b.segment_id, s.key, b.pos, b.len, s.base, s.size, b.topic_id, b.partition
             FROM batches b JOIN segments s ON s.id = b.segment_id
             WHERE b.topic_id = $1 AND b.partition = $2 AND b.last_offset >= $3
             ORDER BY b.max_timestamp DESC, b.base_offset ASC LIMIT 1",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .bind(from_offset)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Self::loc_from_row))
    }

    /// Starts an append transaction (see [`AppendTx`]).
    pub async fn begin_append(&self) -> Result<AppendTx> {
        Ok(AppendTx {
            tx: self.pool.begin().await?,
        })
    }

    pub async fn producer_state(
        &self,
        producer_id: i64,
        topic_id: i64,
        partition: i32,
    ) -> Result<Option<ProducerPartitionState>> {
        let row = sqlx::query(
            "SELECT recent FROM producer_state WHERE producer_id = $1 AND topic_id = $2 AND partition = $3",
        )
        .bind(producer_id)
        .bind(topic_id)
        .bind(partition as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|r| serde_json::from_str(r.get::<&str, _>(0)).ok()))
    }

    /// The idempotent producers whose state is kept for one partition.
    pub async fn producers_of(
        &self,
        topic_id: i64,
        partition: i32,
    ) -> Result<Vec<ProducerSummary>> {
        let rows = sqlx::query(
            "SELECT s.producer_id, s.epoch, s.recent, s.updated_ms,
                    (SELECT t.first_offset FROM txn_partitions t
                     WHERE t.topic_id = s.topic_id AND t.partition = s.partition
                       AND t.producer_id = s.producer_id)
             FROM producer_state s
             WHERE s.topic_id = $1 AND s.partition = $2 ORDER BY s.producer_id",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let recent: ProducerPartitionState =
                    serde_json::from_str(r.get::<&str, _>(2)).unwrap_or_default();
                ProducerSummary {
                    producer_id: r.get(0),
                    epoch: r.get::<i64, _>(1) as i16,
                    last_sequence: recent.recent.last().map_or(-1, |b| b.1),
                    last_timestamp: r.get(3),
                    txn_start_offset: r.get::<Option<i64>, _>(4).unwrap_or(-1),
                }
            })
            .collect())
    }

    /// Hands out a new producer id (never reused).
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO cluster (key, value) VALUES ('next_producer_id', '1')
             ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(cluster.value AS BIGINT) + 1 AS TEXT)
             RETURNING value",
        )
        .fetch_one(&self.pool)
        .await?;
        let v: String = row.get(0);
        Ok(v.parse::<i64>().unwrap_or(1))
    }

    /// Moves the log start forward to `offset` (never backward) and drops
    /// batches entirely below it. Returns the new log start.
    pub async fn advance_log_start(
        &self,
        topic_id: i64,
        partition: i32,
        offset: i64,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE partitions SET log_start = CASE
                 WHEN log_start >= $1 OR log_start >= next_offset THEN log_start
                 WHEN $1 < next_offset THEN $1 ELSE next_offset END
             WHERE topic_id = $2 AND partition = $3 RETURNING log_start",
        )
        .bind(offset)
        .bind(topic_id)
        .bind(partition as i64)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(MetaError::UnknownTopic(format!("topic id {topic_id}")));
        };
        let start: i64 = row.get(0);
        sqlx::query(
            "DELETE FROM batches WHERE topic_id = $1 AND partition = $2 AND last_offset < $3",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .bind(start)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM txn_aborted WHERE topic_id = $1 AND partition = $2 AND last_offset < $3",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .bind(start)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(start)
    }

    /// The offset retention may advance the log start to: past every batch
    /// older than `cutoff_ms`, then past the oldest batches while the
    /// partition holds more than `max_bytes`.
    pub async fn retention_point(
        &self,
        topic_id: i64,
        partition: i32,
        cutoff_ms: Option<i64>,
        max_bytes: Option<i64>,
    ) -> Result<Option<i64>> {
        let mut point: Option<i64> = None;
        if let Some(cutoff) = cutoff_ms {
            // Batches are deleted in offset order; stop at the first one still young.
            let first_young: Option<i64> = sqlx::query(
                "SELECT MIN(base_offset) FROM batches WHERE topic_id = $1 AND partition = $2 AND max_timestamp >= $3",
            )
            .bind(topic_id)
            .bind(partition as i64)
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await?
            .get(0);
            let old_end: Option<i64> = sqlx::query(
                "SELECT MAX(last_offset) + 1 FROM batches WHERE topic_id = $1 AND partition = $2
                 AND max_timestamp < $3 AND ($4 IS NULL OR base_offset < $4)",
            )
            .bind(topic_id)
            .bind(partition as i64)
            .bind(cutoff)
            .bind(first_young)
            .fetch_one(&self.pool)
            .await?
            .get(0);
            point = old_end;
        }
        if let Some(limit) = max_bytes {
            let rows = sqlx::query(
                "SELECT last_offset, len FROM batches WHERE topic_id = $1 AND partition = $2 ORDER BY base_offset DESC",
            )
            .bind(topic_id)
            .bind(partition as i64)
            .fetch_all(&self.pool)
            .await?;
            let mut kept = 0i64;
            for r in rows {
                let len: i64 = r.get(1);
                kept += len;
                if kept > limit {
                    let end: i64 = r.get::<i64, _>(0) + 1;
                    point = Some(point.map_or(end, |p| p.max(end)));
                    break;
                }
            }
        }
        Ok(point)
    }

    pub async fn all_partitions(&self) -> Result<Vec<(TopicRecord, i32)>> {
        let topics = self.list_topics().await?;
        let mut out = Vec::new();
        for t in topics {
            for p in 0..t.partitions {
                out.push((t.clone(), p));
            }
        }
        Ok(out)
    }

    /// The name of the topic with id `id`.
    pub async fn topic_name(&self, id: i64) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT name FROM topics WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0)))
    }

    /// Marks the batches of a partition below `next_offset` as archived:
    /// they point at the [`LAKE_SEGMENT`] marker from then on, so their
    /// segment can be deleted once nothing else refers to it.
    pub async fn mark_archived(
        &self,
        topic_id: i64,
        partition: i32,
        next_offset: i64,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE batches SET segment_id = (SELECT id FROM segments WHERE key = $4)
             WHERE topic_id = $1 AND partition = $2 AND last_offset < $3
               AND segment_id <> (SELECT id FROM segments WHERE key = $4)
               AND segment_id NOT IN (SELECT id FROM segments WHERE beside_table = 1)",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .bind(next_offset)
        .bind(LAKE_SEGMENT)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Points batches of one topic at a segment kept beside its table
    /// (see [`KeptBatch`]); [`Self::mark_archived`] leaves them there.
    pub async fn keep_beside_table(
        &self,
        topic_id: i64,
        segment: &SegmentLoc,
        batches: &[KeptBatch],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let segment_id: i64 = sqlx::query(
            "INSERT INTO segments (key, base, size, created_ms, beside_table) VALUES ($1, $2, $3, $4, 1) RETURNING id",
        )
        .bind(&segment.key)
        .bind(segment.base as i64)
        .bind(segment.size as i64)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        for b in batches {
            sqlx::query(
                "UPDATE batches SET segment_id = $1, pos = $2, len = $3
                 WHERE topic_id = $4 AND partition = $5 AND base_offset = $6",
            )
            .bind(segment_id)
            .bind(b.pos)
            .bind(b.len)
            .bind(topic_id)
            .bind(b.partition as i64)
            .bind(b.base_offset)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes segment rows no batch points to and returns the object keys
    /// that no segment refers to any more.
    pub async fn collect_unreferenced_segments(&self, older_than_ms: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "DELETE FROM segments WHERE created_ms < $1
             AND key <> $2
             AND NOT EXISTS (SELECT 1 FROM batches WHERE batches.segment_id = segments.id)
             RETURNING key",
        )
        .bind(older_than_ms)
        .bind(LAKE_SEGMENT)
        .fetch_all(&self.pool)
        .await?;
        let mut keys: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        keys.sort();
        keys.dedup();
        let mut free = Vec::new();
        for key in keys {
            if !self.segment_exists(&key).await? {
                free.push(key);
            }
        }
        Ok(free)
    }

    pub async fn segment_exists(&self, key: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM segments WHERE key = $1 LIMIT 1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Total stored bytes and batch count of a partition (for tools).
    pub async fn partition_size(&self, topic_id: i64, partition: i32) -> Result<i64> {
        let v: Option<i64> = sqlx::query(
            "SELECT CAST(SUM(len) AS BIGINT) FROM batches WHERE topic_id = $1 AND partition = $2",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .fetch_one(&self.pool)
        .await?
        .get(0);
        Ok(v.unwrap_or(0))
    }

    /// Copies committed WAL pages into the database file without blocking
    /// writers (SQLite's PASSIVE checkpoint).
    pub async fn checkpoint(&self) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        if self.backend == Backend::Sqlite {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await;
        }
        self.pool.close().await;
    }
}

/// One append transaction. Everything indexed in it becomes visible at
/// once when it commits, or not at all (dropping it rolls back). A flush
/// indexes its segment, and, when records of it go to dead-letter topics,
/// a second segment holding them, whose contents depend on the offsets the
/// first assignment gave: written while the transaction is open, it is
/// still durable before the commit that makes it visible.
pub struct AppendTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl AppendTx {
    /// Records a segment and indexes its batches, assigning offsets: each
    /// stored batch takes `offsets` offsets after those of the batches
    /// before it in its partition.
    ///
    /// The producer checks happen here, inside the transaction, against
    /// the stored state: the partitions' rows are locked first, so no other
    /// broker appends to them until this commits. An idempotent batch is
    /// checked against its producer's last sequences (a retry that already
    /// reached another broker is answered with its first offset, never
    /// stored twice); a transactional one must belong to an open
    /// transaction of its producer's epoch that holds the partition; a
    /// transaction marker closes its producer's transaction on the
    /// partition. The updated producer states are returned.
    ///
    /// Statement count does not grow with the number of plain batches: two
    /// offset statements per partition, one multi-row insert for the index.
    pub async fn index(
        &mut self,
        segment: &SegmentLoc,
        batches: &[NewBatch],
    ) -> Result<(Vec<Appended>, HashMap<ProducerKey, ProducerPartitionState>)> {
        let now = now_ms();
        let tx = &mut self.tx;
        let segment_id: i64 = sqlx::query(
            "INSERT INTO segments (key, base, size, created_ms) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(&segment.key)
        .bind(segment.base as i64)
        .bind(segment.size as i64)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?
        .get(0);

        let mut next = lock_partitions(tx, batches).await?;
        let keys: Vec<ProducerKey> = batches
            .iter()
            .filter_map(|b| {
                let producer_id = match (&b.producer, &b.txn) {
                    (Some(p), _) => p.producer_id,
                    (None, Some(TxnPart::Marker { producer_id, .. })) => *producer_id,
                    _ => return None,
                };
                Some((producer_id, b.topic_id, b.partition))
            })
            .collect();
        let mut states = load_producer_states(tx, &keys).await?;
        let mut changed: HashMap<ProducerKey, ProducerPartitionState> = HashMap::new();

        let mut out = Vec::with_capacity(batches.len());
        let mut rows: Vec<(&NewBatch, i64)> = Vec::with_capacity(batches.len());
        for b in batches {
            let Some(Some((base, log_start))) = next.get_mut(&(b.topic_id, b.partition)) else {
                out.push(Appended::UnknownPartition);
                continue;
            };
            let base_offset = *base;
            if let Some(p) = &b.producer {
                let key = (p.producer_id, b.topic_id, b.partition);
                match check_sequence(states.get(&key), p) {
                    SequenceCheck::Accept => {}
                    SequenceCheck::Duplicate(first) if first >= 0 => {
                        out.push(Appended::Duplicate { base_offset: first });
                        continue;
                    }
                    SequenceCheck::Duplicate(_) => {
                        out.push(Appended::Refused {
                            error: ResponseError::DuplicateSequenceNumber,
                            message: "batch is a retry of one still being stored".into(),
                        });
                        continue;
                    }
                    SequenceCheck::Reject(error, message) => {
                        out.push(Appended::Refused { error, message });
                        continue;
                    }
                }
            }
            if let Some(t) = &b.txn
                && let Err((error, message)) = index_txn_batch(tx, b, t, base_offset).await?
            {
                out.push(Appended::Refused { error, message });
                continue;
            }
            *base += b.offsets;
            rows.push((b, base_offset));
            if let Some(TxnPart::Marker {
                producer_id, epoch, ..
            }) = b.txn
            {
                // A marker of a bumped epoch (the broker aborted and fenced
                // the producer) fences the old epoch's appends here too.
                let key = (producer_id, b.topic_id, b.partition);
                if let Some(state) = states.get_mut(&key)
                    && state.epoch < epoch
                {
                    state.epoch = epoch;
                    state.recent.clear();
                    changed.insert(key, state.clone());
                }
            }
            if let Some(p) = &b.producer {
                let key = (p.producer_id, b.topic_id, b.partition);
                let state = states.entry(key).or_default();
                if state.epoch != p.epoch {
                    state.recent.clear();
                }
                state.epoch = p.epoch;
                state.recent.push((p.first_seq, p.last_seq, base_offset));
                if state.recent.len() > PRODUCER_RECENT_BATCHES {
                    state.recent.remove(0);
                }
                changed.insert(key, state.clone());
            }
            out.push(Appended::Ok {
                base_offset,
                log_start: *log_start,
            });
        }

        store_next_offsets(tx, &next).await?;
        insert_batch_rows(tx, &rows, segment_id).await?;
        store_producer_states(tx, &changed, now).await?;
        Ok((out, changed))
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

pub fn unix_ms() -> i64 {
    now_ms()
}

/// A consumer group as persisted after each completed rebalance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// JSON array of members (owned by the coordinator).
    pub members_json: String,
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

impl MetaStore {
    /// One group's stored state.
    pub async fn load_group(&self, group_id: &str) -> Result<Option<StoredGroup>> {
        let row = sqlx::query(
            "SELECT group_id, protocol_type, protocol, generation, leader, members
             FROM consumer_groups WHERE group_id = $1",
        )
        .bind(group_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredGroup {
            group_id: r.get(0),
            protocol_type: r.get(1),
            protocol: r.get(2),
            generation: r.get::<i64, _>(3) as i32,
            leader: r.get(4),
            members_json: r.get(5),
        }))
    }

    /// Every group with stored state or committed offsets.
    pub async fn group_ids(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT group_id FROM consumer_groups
             UNION SELECT DISTINCT group_id FROM group_offsets ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn save_group(&self, g: &StoredGroup) -> Result<()> {
        sqlx::query(
            "INSERT INTO consumer_groups (group_id, protocol_type, protocol, generation, leader, members, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (group_id) DO UPDATE SET protocol_type = excluded.protocol_type,
               protocol = excluded.protocol, generation = excluded.generation, leader = excluded.leader,
               members = excluded.members, updated_ms = excluded.updated_ms",
        )
        .bind(&g.group_id)
        .bind(&g.protocol_type)
        .bind(&g.protocol)
        .bind(g.generation as i64)
        .bind(&g.leader)
        .bind(&g.members_json)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_group(&self, group_id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM group_offsets WHERE group_id = $1",
            "DELETE FROM consumer_groups WHERE group_id = $1",
        ] {
            sqlx::query(sql).bind(group_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores offsets for a group in one transaction.
    pub async fn commit_offsets(&self, group_id: &str, offsets: &[CommittedOffset]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for o in offsets {
            sqlx::query(
                "INSERT INTO group_offsets (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (group_id, topic, partition) DO UPDATE SET
                   committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch,
                   metadata = excluded.metadata, commit_ms = excluded.commit_ms",
            )
            .bind(group_id)
            .bind(&o.topic)
            .bind(o.partition as i64)
            .bind(o.offset)
            .bind(o.leader_epoch as i64)
            .bind(&o.metadata)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn fetch_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>> {
        let rows = sqlx::query(
            "SELECT topic, partition, committed_offset, leader_epoch, metadata FROM group_offsets
             WHERE group_id = $1 ORDER BY topic, partition",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| CommittedOffset {
                topic: r.get(0),
                partition: r.get::<i64, _>(1) as i32,
                offset: r.get(2),
                leader_epoch: r.get::<i64, _>(3) as i32,
                metadata: r.get(4),
            })
            .collect())
    }

    pub async fn delete_offsets(&self, group_id: &str, topic: &str, partition: i32) -> Result<()> {
        sqlx::query(
            "DELETE FROM group_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3",
        )
        .bind(group_id)
        .bind(topic)
        .bind(partition as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Groups that have committed offsets (some may have no stored metadata).
    pub async fn groups_with_offsets(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT group_id FROM group_offsets")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// Checks and records, inside an append transaction, a transactional
/// batch: a data batch must belong to the open transaction of its
/// producer's current epoch on this partition (KIP-890's server-side
/// check: nothing is added to a transaction after EndTxn began or after
/// the producer was fenced), and marks where that transaction starts here;
/// a marker closes the producer's transaction on the partition and, for an
/// abort, records the aborted range.
async fn index_txn_batch(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    b: &NewBatch,
    part: &TxnPart,
    base_offset: i64,
) -> Result<std::result::Result<(), (ResponseError, String)>> {
    match *part {
        TxnPart::Data { producer_id, epoch } => {
            let done = sqlx::query(
                "UPDATE txn_partitions SET first_offset = COALESCE(first_offset, $4)
                 WHERE topic_id = $1 AND partition = $2 AND producer_id = $3
                   AND epoch = $5 AND ending = 0",
            )
            .bind(b.topic_id)
            .bind(b.partition as i64)
            .bind(producer_id)
            .bind(base_offset)
            .bind(epoch as i64)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(Ok(()));
            }
            let row = sqlx::query(
                "SELECT epoch FROM txn_partitions
                 WHERE topic_id = $1 AND partition = $2 AND producer_id = $3",
            )
            .bind(b.topic_id)
            .bind(b.partition as i64)
            .bind(producer_id)
            .fetch_optional(&mut **tx)
            .await?;
            Ok(Err(match row.map(|r| r.get::<i64, _>(0)) {
                Some(current) if current > epoch as i64 => (
                    ResponseError::InvalidProducerEpoch,
                    format!("producer {producer_id} epoch {epoch} was fenced by epoch {current}"),
                ),
                Some(_) => (
                    ResponseError::InvalidTxnState,
                    format!("the transaction of producer {producer_id} is ending"),
                ),
                None => (
                    ResponseError::InvalidTxnState,
                    format!(
                        "partition {} was not added to a transaction of producer {producer_id} (AddPartitionsToTxn first)",
                        b.partition
                    ),
                ),
            }))
        }
        TxnPart::Marker {
            producer_id,
            commit,
            ..
        } => {
            let row = sqlx::query(
                "DELETE FROM txn_partitions WHERE topic_id = $1 AND partition = $2 AND producer_id = $3
                 RETURNING first_offset",
            )
            .bind(b.topic_id)
            .bind(b.partition as i64)
            .bind(producer_id)
            .fetch_optional(&mut **tx)
            .await?;
            let first: Option<i64> = row.and_then(|r| r.get(0));
            if let (false, Some(first_offset)) = (commit, first) {
                sqlx::query(
                    "INSERT INTO txn_aborted (topic_id, partition, last_offset, producer_id, first_offset)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(b.topic_id)
                .bind(b.partition as i64)
                .bind(base_offset + b.offsets - 1)
                .bind(producer_id)
                .bind(first_offset)
                .execute(&mut **tx)
                .await?;
            }
            Ok(Ok(()))
        }
    }
}

/// Locks the rows of the partitions `batches` go to and reads where each
/// stands: the next offset to hand out and the log start, or `None` for a
/// partition that is gone.
async fn lock_partitions(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    batches: &[NewBatch],
) -> Result<HashMap<(i64, i32), Option<(i64, i64)>>> {
    // Rows are locked in key order, the same in every broker, so two
    // brokers' appends to the same partitions queue behind each other
    // instead of deadlocking. The update changes nothing but takes the row
    // lock (and, in SQLite, the write lock) before anything is read.
    let partitions: BTreeSet<(i64, i32)> =
        batches.iter().map(|b| (b.topic_id, b.partition)).collect();
    let mut next: HashMap<(i64, i32), Option<(i64, i64)>> = HashMap::new();
    for (topic_id, partition) in partitions {
        let row = sqlx::query(
            "UPDATE partitions SET next_offset = next_offset
             WHERE topic_id = $1 AND partition = $2 RETURNING next_offset, log_start",
        )
        .bind(topic_id)
        .bind(partition as i64)
        .fetch_optional(&mut **tx)
        .await?;
        next.insert(
            (topic_id, partition),
            row.map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1))),
        );
    }
    Ok(next)
}

/// Writes back each locked partition's next offset.
async fn store_next_offsets(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    next: &HashMap<(i64, i32), Option<(i64, i64)>>,
) -> Result<()> {
    let mut in_order: Vec<_> = next
        .iter()
        .filter_map(|(k, v)| Some((*k, v.as_ref()?.0)))
        .collect();
    in_order.sort();
    for ((topic_id, partition), next_offset) in in_order {
        sqlx::query(
            "UPDATE partitions SET next_offset = $1 WHERE topic_id = $2 AND partition = $3",
        )
        .bind(next_offset)
        .bind(topic_id)
        .bind(partition as i64)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The stored sequence states of `keys`' producers.
async fn load_producer_states(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    keys: &[ProducerKey],
) -> Result<HashMap<ProducerKey, ProducerPartitionState>> {
    let mut keys: Vec<ProducerKey> = keys.to_vec();
    keys.sort();
    keys.dedup();
    let mut out = HashMap::new();
    for chunk in keys.chunks(500) {
        let mut sql = String::from(
            "SELECT producer_id, topic_id, partition, recent FROM producer_state WHERE ",
        );
        for i in 0..chunk.len() {
            let n = i * 3;
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!(
                "(producer_id = ${} AND topic_id = ${} AND partition = ${})",
                n + 1,
                n + 2,
                n + 3
            ));
        }
        let mut q = sqlx::query(&sql);
        for (p, t, part) in chunk {
            q = q.bind(*p).bind(*t).bind(*part as i64);
        }
        for r in q.fetch_all(&mut **tx).await? {
            let key = (r.get(0), r.get(1), r.get::<i64, _>(2) as i32);
            if let Ok(state) = serde_json::from_str(r.get::<&str, _>(3)) {
                out.insert(key, state);
            }
        }
    }
    Ok(out)
}

/// The offset index rows of one flush, many to a statement.
async fn insert_batch_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    rows: &[(&NewBatch, i64)],
    segment_id: i64,
) -> Result<()> {
    // SQLite allows 32766 bound values per statement (PostgreSQL 65535);
    // 8 per row.
    for chunk in rows.chunks(1000) {
        let mut sql = String::from(
            "INSERT INTO batches (topic_id, partition, base_offset, last_offset, max_timestamp, segment_id, pos, len) VALUES ",
        );
        for i in 0..chunk.len() {
            let n = i * 8;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8
            ));
        }
        let mut q = sqlx::query(&sql);
        for (b, base) in chunk {
            q = q
                .bind(b.topic_id)
                .bind(b.partition as i64)
                .bind(*base)
                .bind(*base + b.offsets - 1)
                .bind(b.max_timestamp)
                .bind(segment_id)
                .bind(b.pos)
                .bind(b.len);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The producers' new sequence states, written in key order (as the
/// partition rows are locked) so concurrent flushes do not deadlock.
async fn store_producer_states(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    states: &HashMap<ProducerKey, ProducerPartitionState>,
    now: i64,
) -> Result<()> {
    let mut states_in_order: Vec<_> = states.iter().collect();
    states_in_order.sort_by_key(|(k, _)| **k);
    for ((producer_id, topic_id, partition), state) in states_in_order {
        sqlx::query(
            "INSERT INTO producer_state (producer_id, topic_id, partition, epoch, recent, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (producer_id, topic_id, partition)
             DO UPDATE SET epoch = excluded.epoch, recent = excluded.recent, updated_ms = excluded.updated_ms",
        )
        .bind(producer_id)
        .bind(topic_id)
        .bind(*partition as i64)
        .bind(state.epoch as i64)
        .bind(serde_json::to_string(state).unwrap_or_default())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl From<MetaError> for crate::common::KafkaError {
    fn from(e: MetaError) -> crate::common::KafkaError {
        use kafka_protocol::error::ResponseError;
        let code = match &e {
            MetaError::TopicExists(_) => ResponseError::TopicAlreadyExists,
            MetaError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            MetaError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            MetaError::Db(_) | MetaError::Migrate(_) => {
                tracing::error!(error = %e, "metadata store failure");
                ResponseError::KafkaStorageError
            }
        };
        crate::common::KafkaError::new(code, e.to_string())
    }
}
