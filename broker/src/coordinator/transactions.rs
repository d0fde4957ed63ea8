//! The transaction coordinator (KIP-98, with KIP-360's epoch bumps and
//! KIP-447's group fencing): producer ids for transactional ids, the
//! partitions and groups of each open transaction, and ending it by writing
//! a commit or abort marker into every partition that took data, then
//! making its offsets visible (commit) or dropping them (abort).
//!
//! ```text
//!  InitProducerId ──► Empty ──AddPartitions/AddOffsets──► Ongoing
//!                                                            │ EndTxn, or timeout (epoch bumped: the producer is fenced)
//!                                                            ▼
//!            CompleteCommit / CompleteAbort ◄── markers ── PrepareCommit / PrepareAbort
//! ```
//!
//! All state is in the metadata store ([`crate::store::txn`]) and every
//! step is a compare-and-set, so any broker serves any transactional id and
//! a broker that dies mid-EndTxn leaves a Prepare state that the next
//! upkeep round (on any broker) finishes. Markers go through the same
//! appender as produced batches: durable in the object store before the
//! metadata commit that makes them visible.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, UPKEEP_LEASE};
use crate::log::append::{Appender, BatchOutcome, PendingBatch};
use crate::log::batch;
use crate::store::meta::{MetaStore, TxnPart, unix_ms};
use crate::store::txn::{TxnChange, TxnOffset, TxnRecord, TxnState};

/// Kafka's `transaction.max.timeout.ms` default: a producer asking for a
/// longer timeout is refused with INVALID_TRANSACTION_TIMEOUT.
pub const MAX_TIMEOUT_MS: i32 = 15 * 60 * 1000;
/// A Prepare state older than this is taken for the work of a broker
/// that died mid-EndTxn, and finished by the upkeep round.
const STUCK_AFTER_MS: i64 = 10_000;
/// How often open transactions are checked against their timeouts.
const UPKEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Compare-and-set attempts before giving up with a retriable error.
const ATTEMPTS: usize = 20;

/// The coordinator's error: the Kafka code and a message for the log.
pub type TxnError = (ResponseError, String);

pub struct Transactions {
    meta: MetaStore,
    appender: Appender,
}

fn err(code: ResponseError, message: impl Into<String>) -> TxnError {
    (code, message.into())
}

fn store_err(e: impl std::fmt::Display) -> TxnError {
    tracing::error!(error = %e, "transaction state unavailable");
    err(
        ResponseError::CoordinatorNotAvailable,
        format!("transaction state unavailable: {e}"),
    )
}

fn busy() -> TxnError {
    err(
        ResponseError::ConcurrentTransactions,
        "the transactional id is being changed by another request; retry",
    )
}

/// The last epoch a producer id is bumped to; past it, InitProducerId
/// hands out a new producer id.
const LAST_EPOCH: i16 = i16::MAX - 1;

impl Transactions {
    pub fn new(meta: MetaStore, appender: Appender) -> Arc<Transactions> {
        Arc::new(Transactions { meta, appender })
    }

    async fn load(&self, id: &str) -> Result<Option<TxnRecord>, TxnError> {
        self.meta.txn(id).await.map_err(store_err)
    }

    /// The transactional id's record if `producer_id`/`epoch` are its
    /// current ones; Kafka's error if not.
    async fn current(&self, id: &str, producer_id: i64, epoch: i16) -> Result<TxnRecord, TxnError> {
        let Some(rec) = self.load(id).await? else {
            return Err(err(
                ResponseError::InvalidProducerIdMapping,
                format!("transactional id '{id}' is not initialized (InitProducerId first)"),
            ));
        };
        if rec.producer_id != producer_id {
            return Err(err(
                ResponseError::InvalidProducerIdMapping,
                format!(
                    "producer id {producer_id} does not belong to transactional id '{id}' (it has {})",
                    rec.producer_id
                ),
            ));
        }
        if rec.epoch != epoch {
            return Err(err(
                ResponseError::ProducerFenced,
                format!(
                    "producer {producer_id} epoch {epoch} is fenced: transactional id '{id}' is at epoch {}",
                    rec.epoch
                ),
            ));
        }
        Ok(rec)
    }

    /// InitProducerId for a transactional id: the producer id and a new
    /// epoch, fencing every earlier instance. A transaction left open by
    /// an earlier instance is aborted first; one being ended is finished.
    pub async fn init_producer(
        &self,
        id: &str,
        timeout_ms: i32,
        given: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(err(
                ResponseError::InvalidTransactionTimeout,
                format!(
                    "transaction.timeout.ms {timeout_ms} is outside 1..={MAX_TIMEOUT_MS} (transaction.max.timeout.ms)"
                ),
            ));
        }
        for _ in 0..ATTEMPTS {
            let Some(rec) = self.load(id).await? else {
                let producer_id = self.meta.allocate_producer_id().await.map_err(store_err)?;
                let rec = TxnRecord {
                    transactional_id: id.to_string(),
                    producer_id,
                    epoch: 0,
                    state: TxnState::Empty,
                    timeout_ms,
                    started_ms: 0,
                    updated_ms: 0,
                    groups: Vec::new(),
                    partitions: Vec::new(),
                    aborted_by: None,
                };
                if self.meta.create_txn(&rec).await.map_err(store_err)? {
                    tracing::info!(
                        transactional_id = id,
                        producer_id,
                        "new transactional producer"
                    );
                    return Ok((producer_id, 0));
                }
                continue;
            };
            if let Some((pid, epoch)) = given
                && pid >= 0
            {
                // KIP-360: a producer re-initializing names its current
                // id and epoch; an older instance is fenced.
                if pid != rec.producer_id {
                    return Err(err(
                        ResponseError::InvalidProducerIdMapping,
                        format!("producer id {pid} does not belong to '{id}'"),
                    ));
                }
                if epoch != rec.epoch {
                    return Err(err(
                        ResponseError::ProducerFenced,
                        format!("epoch {epoch} of '{id}' is fenced by epoch {}", rec.epoch),
                    ));
                }
            }
            match rec.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    self.finish(&rec).await?;
                    continue;
                }
                TxnState::Ongoing => {
                    // Abort the earlier instance's transaction, fencing it.
                    self.end(
                        &rec,
                        false,
                        true,
                        Some("the producer was initialized again"),
                    )
                    .await?;
                    continue;
                }
                _ => {}
            }
            let (producer_id, epoch, fresh) = if rec.epoch >= LAST_EPOCH {
                let p = self.meta.allocate_producer_id().await.map_err(store_err)?;
                (p, 0, Some(p))
            } else {
                (rec.producer_id, rec.epoch + 1, None)
            };
            let change = TxnChange {
                producer_id: fresh,
                epoch: Some(epoch),
                state: Some(TxnState::Empty),
                timeout_ms: Some(timeout_ms),
                started_ms: Some(0),
                groups: Some(Vec::new()),
                ..TxnChange::default()
            };
            if self
                .meta
                .update_txn(&rec, &change)
                .await
                .map_err(store_err)?
            {
                tracing::info!(
                    transactional_id = id,
                    producer_id,
                    epoch,
                    "transactional producer initialized"
                );
                return Ok((producer_id, epoch));
            }
        }
        Err(busy())
    }

    /// AddPartitionsToTxn: the partitions join the open transaction
    /// (opening one if none is).
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(i64, i32)],
    ) -> Result<(), TxnError> {
        for _ in 0..ATTEMPTS {
            let rec = self.current(id, producer_id, epoch).await?;
            if rec.state.is_ending() {
                return Err(busy());
            }
            let known = partitions.iter().all(|(t, p)| {
                rec.partitions
                    .iter()
                    .any(|x| x.topic_id == *t && x.partition == *p)
            });
            if rec.state == TxnState::Ongoing && known {
                return Ok(());
            }
            if self
                .meta
                .add_txn_partitions(&rec, partitions)
                .await
                .map_err(store_err)?
            {
                if rec.state != TxnState::Ongoing {
                    metrics::counter!("sluice_transactions_started_total").increment(1);
                }
                return Ok(());
            }
        }
        Err(busy())
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the
    /// transaction.
    pub async fn add_group(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group_id: &str,
    ) -> Result<(), TxnError> {
        for _ in 0..ATTEMPTS {
            let rec = self.current(id, producer_id, epoch).await?;
            if rec.state.is_ending() {
                return Err(busy());
            }
            if rec.state == TxnState::Ongoing && rec.groups.iter().any(|g| g == group_id) {
                return Ok(());
            }
            if self
                .meta
                .add_txn_group(&rec, group_id)
                .await
                .map_err(store_err)?
            {
                if rec.state != TxnState::Ongoing {
                    metrics::counter!("sluice_transactions_started_total").increment(1);
                }
                return Ok(());
            }
        }
        Err(busy())
    }

    /// TxnOffsetCommit: offsets stored with the open transaction, visible
    /// to the group only once it commits.
    pub async fn commit_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        offsets: &[TxnOffset],
    ) -> Result<(), TxnError> {
        for _ in 0..ATTEMPTS {
            let rec = self.current(id, producer_id, epoch).await?;
            if rec.state != TxnState::Ongoing {
                return Err(err(
                    ResponseError::InvalidTxnState,
                    format!("transactional id '{id}' has no open transaction"),
                ));
            }
            if let Some(o) = offsets.iter().find(|o| !rec.groups.contains(&o.group_id)) {
                return Err(err(
                    ResponseError::InvalidTxnState,
                    format!(
                        "group '{}' was not added to the transaction (AddOffsetsToTxn first)",
                        o.group_id
                    ),
                ));
            }
            if self
                .meta
                .put_txn_offsets(&rec, offsets)
                .await
                .map_err(store_err)?
            {
                return Ok(());
            }
        }
        Err(busy())
    }

    /// EndTxn from the producer: commit or abort its open transaction. A
    /// retry of an EndTxn that completed answers success again.
    pub async fn end_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        for _ in 0..ATTEMPTS {
            let rec = self.current(id, producer_id, epoch).await?;
            let wrong = || {
                err(
                    ResponseError::InvalidTxnState,
                    format!(
                        "cannot {} transactional id '{id}' in state {}",
                        if commit { "commit" } else { "abort" },
                        rec.state
                    ),
                )
            };
            let done = match (rec.state, commit) {
                (TxnState::Ongoing, _) => self.end(&rec, commit, false, None).await,
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    self.finish(&rec).await
                }
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    return Ok(());
                }
                (TxnState::Empty, false) => return Ok(()),
                _ => return Err(wrong()),
            };
            match done {
                // Lost a race (the timeout abort, another broker) or the
                // markers are not all stored yet: look again.
                Err((ResponseError::ConcurrentTransactions, _)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
        Err(busy())
    }

    /// Ends an open transaction: Prepare state (with the epoch bumped to
    /// fence the producer, when the broker aborts on its own), markers,
    /// then Complete. `rec` is the Ongoing record as read.
    async fn end(
        &self,
        rec: &TxnRecord,
        commit: bool,
        fence: bool,
        why: Option<&str>,
    ) -> Result<(), TxnError> {
        let mut change = TxnChange {
            state: Some(if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            }),
            aborted_by: why.map(|w| Some(w.to_string())),
            ..TxnChange::default()
        };
        let mut next = rec.clone();
        next.aborted_by = why.map(str::to_string);
        // An exhausted epoch stays; InitProducerId then hands out a new id.
        if fence && rec.epoch < LAST_EPOCH {
            change.epoch = Some(rec.epoch + 1);
            next.epoch = rec.epoch + 1;
        }
        if !self
            .meta
            .begin_end_txn(rec, &change)
            .await
            .map_err(store_err)?
        {
            return Err(busy());
        }
        next.state = change.state.unwrap_or(next.state);
        self.finish(&next).await
    }

    /// Writes the markers of a transaction in a Prepare state and
    /// completes it.
    async fn finish(&self, rec: &TxnRecord) -> Result<(), TxnError> {
        let commit = rec.state == TxnState::PrepareCommit;
        // The partitions as they stand now that no data can join them.
        let now = self.load(&rec.transactional_id).await?;
        let Some(now) = now.filter(|n| {
            n.producer_id == rec.producer_id && n.epoch == rec.epoch && n.state == rec.state
        }) else {
            return Err(busy());
        };
        let batches: Vec<PendingBatch> = now
            .partitions
            .iter()
            .filter(|p| p.first_offset.is_some())
            .map(|p| {
                let (header, bytes) = batch::marker(rec.producer_id, rec.epoch, commit, unix_ms());
                PendingBatch {
                    topic_id: p.topic_id,
                    partition: p.partition,
                    header,
                    bytes,
                    dead_letters: None,
                    txn: Some(TxnPart::Marker {
                        producer_id: rec.producer_id,
                        epoch: rec.epoch,
                        commit,
                    }),
                }
            })
            .collect();
        if !batches.is_empty() {
            let outcomes = self.appender.submit(batches).await.wait().await;
            if let Some(BatchOutcome::Failed { error, message }) = outcomes
                .iter()
                .find(|o| matches!(o, BatchOutcome::Failed { error, .. } if *error != ResponseError::UnknownTopicOrPartition))
            {
                tracing::warn!(transactional_id = %rec.transactional_id, ?error, %message, "cannot write transaction markers; will retry");
                return Err(err(
                    ResponseError::ConcurrentTransactions,
                    format!("transaction markers not written yet: {message}"),
                ));
            }
        }
        if !self
            .meta
            .complete_txn(&now, commit)
            .await
            .map_err(store_err)?
        {
            return Err(busy());
        }
        let outcome = match (commit, &rec.aborted_by) {
            (true, _) => "committed",
            (false, Some(w)) if w.contains("timed out") => "timed_out",
            (false, _) => "aborted",
        };
        metrics::counter!("sluice_transactions_total", "outcome" => outcome).increment(1);
        tracing::debug!(transactional_id = %rec.transactional_id, outcome, "transaction ended");
        Ok(())
    }

    /// One upkeep round: aborts transactions open longer than their
    /// timeout (fencing their producers) and finishes those left in a
    /// Prepare state by a broker that died.
    pub async fn upkeep(&self) -> Result<(), TxnError> {
        let all = self.meta.txns().await.map_err(store_err)?;
        let now = unix_ms();
        let mut open = 0u64;
        for rec in all {
            match rec.state {
                TxnState::Ongoing => {
                    open += 1;
                    if rec.started_ms > 0 && now - rec.started_ms > rec.timeout_ms as i64 {
                        tracing::info!(
                            transactional_id = %rec.transactional_id,
                            producer_id = rec.producer_id,
                            timeout_ms = rec.timeout_ms,
                            "transaction timed out; aborting it and fencing its producer"
                        );
                        let why = format!(
                            "timed out after transaction.timeout.ms = {}",
                            rec.timeout_ms
                        );
                        if let Err((code, message)) = self.end(&rec, false, true, Some(&why)).await
                        {
                            tracing::debug!(?code, %message, "timeout abort deferred");
                        }
                    }
                }
                TxnState::PrepareCommit | TxnState::PrepareAbort
                    if now - rec.updated_ms > STUCK_AFTER_MS =>
                {
                    open += 1;
                    tracing::info!(transactional_id = %rec.transactional_id, state = %rec.state, "finishing a transaction left half-ended");
                    if let Err((code, message)) = self.finish(&rec).await {
                        tracing::debug!(?code, %message, "finishing deferred");
                    }
                }
                s if s.is_ending() => open += 1,
                _ => {}
            }
        }
        metrics::gauge!("sluice_transactions_open").set(open as f64);
        Ok(())
    }
}

/// Runs [`Transactions::upkeep`] on the broker holding the upkeep lease.
pub async fn run(txns: Arc<Transactions>, cluster: Arc<Cluster>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(UPKEEP_INTERVAL) => {}
        }
        if !cluster.should_run(UPKEEP_LEASE, "transactions").await {
            continue;
        }
        if let Err((_, message)) = txns.upkeep().await {
            tracing::warn!(%message, "transaction upkeep failed");
        }
    }
}
