//! The produce path below the handler: group commit of batches from every
//! connection into one segment object and one metadata transaction.
//!
//! ```text
//!  connections ──AppendJob──► queue ──► flusher (one task)
//!                                         1. idempotence checks (sequence, epoch)
//!                                         2. concatenate accepted batches → segment
//!                                         3. put segment in the object store   (durable first)
//!                                         4. metadata txn: producer checks against the
//!                                            stored state, assign offsets, index batches
//!                                            (+ the dead letters of accepted batches)
//!                                         5. reply to every job, wake waiting fetches
//! ```
//!
//! The flusher takes everything queued when it becomes free, so the window is
//! as short as one flush when idle and grows with load (no timer). It runs as
//! two stages so that the object write of one flush overlaps the metadata
//! commit of the one before; commits stay in flush order. Idempotence checks
//! see the state of flushes not yet committed, and if a flush fails, flushes
//! prepared on top of it are refused with a retriable error so a producer's
//! sequence never skips a batch that was not stored. The checks here are
//! the fast path; the metadata transaction repeats them against the stored
//! state (which another broker may have changed) and has the last word.
//! Transaction markers, written by the transaction coordinator, carry no
//! sequence and skip the first check.
//!
//! A batch may carry dead letters (records taken out of it because they
//! failed validation, see [`crate::log::dead_letter`]). They are written in the
//! commit transaction of the flush that stores the batch, never for a batch
//! answered as a duplicate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::log::batch::BatchHeader;
use crate::log::dead_letter::DeadLetters;
use crate::store::meta::{
    Appended, MetaStore, NewBatch, PRODUCER_RECENT_BATCHES, ProducerKey, ProducerPartitionState,
    ProducerUpdate, SequenceCheck, TxnPart, check_sequence,
};
use crate::store::objects::{SegmentLoc, Segments};

type ProducerStates = HashMap<ProducerKey, ProducerPartitionState>;

/// Largest segment one flush writes; more queued data waits for the next flush.
const MAX_FLUSH_BYTES: usize = 16 * 1024 * 1024;
const QUEUE_JOBS: usize = 1024;

/// One produced batch, already split out of its request and CRC-checked.
#[derive(Debug, Clone)]
pub struct PendingBatch {
    pub topic_id: i64,
    pub partition: i32,
    pub header: BatchHeader,
    pub bytes: Bytes,
    /// Records taken out of the batch, stored if and when it is.
    pub dead_letters: Option<Arc<DeadLetters>>,
    /// The batch's part in a transaction: checked and recorded in the
    /// append's metadata transaction.
    pub txn: Option<TxnPart>,
}

impl PendingBatch {
    /// The batch's row in the offset index, stored at `pos` in its segment.
    fn index_entry(&self, pos: i64, producer: Option<ProducerUpdate>) -> NewBatch {
        NewBatch {
            topic_id: self.topic_id,
            partition: self.partition,
            // From the last offset delta, not the record count: a batch
            // with records taken out keeps the offsets of those records
            // unused.
            offsets: self.header.offset_span(),
            // A batch left without records has no timestamp to be found by
            // (ListOffsets, retention).
            max_timestamp: if self.header.record_count == 0 {
                -1
            } else {
                self.header.max_timestamp
            },
            pos,
            len: self.bytes.len() as i64,
            producer,
            txn: self.txn,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    Appended {
        base_offset: i64,
        log_start: i64,
    },
    Failed {
        error: ResponseError,
        message: String,
    },
}

struct AppendJob {
    batches: Vec<PendingBatch>,
    reply: oneshot::Sender<Vec<BatchOutcome>>,
}

/// Handle used by produce handlers; cheap to clone.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<AppendJob>,
}

/// A submitted job; await it for the outcome of each batch.
pub struct AppendTicket {
    rx: oneshot::Receiver<Vec<BatchOutcome>>,
    count: usize,
}

impl AppendTicket {
    pub async fn wait(self) -> Vec<BatchOutcome> {
        match self.rx.await {
            Ok(v) => v,
            Err(_) => vec![
                BatchOutcome::Failed {
                    error: ResponseError::KafkaStorageError,
                    message: "the broker is shutting down; the batch was not stored".into(),
                };
                self.count
            ],
        }
    }
}

impl Appender {
    /// Starts the flusher. It stops after `shutdown` is cancelled and the
    /// queue is drained.
    pub fn start(
        meta: MetaStore,
        segments: Segments,
        commits: watch::Sender<u64>,
        placement: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) -> (Appender, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_JOBS);
        // One prepared flush may wait while another commits: the segment
        // write of flush N+1 overlaps the metadata commit of flush N.
        let (prepared_tx, prepared_rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            committed: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
        });
        let preparer = Preparer {
            meta: meta.clone(),
            segments: segments.clone(),
            shared: shared.clone(),
            speculative: HashMap::new(),
            epoch: 0,
            placement,
        };
        let committer = Committer {
            meta,
            segments,
            commits,
            shared,
        };
        let prepare = tokio::spawn(preparer.run(rx, prepared_tx, shutdown));
        let commit = tokio::spawn(committer.run(prepared_rx));
        let handle = tokio::spawn(async move {
            let _ = prepare.await;
            let _ = commit.await;
            tracing::debug!("append flusher stopped");
        });
        (Appender { tx }, handle)
    }

    /// Queues batches in order. Jobs submitted one after another from one
    /// task are stored in that order.
    pub async fn submit(&self, batches: Vec<PendingBatch>) -> AppendTicket {
        let (reply, rx) = oneshot::channel();
        let count = batches.len();
        // A closed queue drops the job; the ticket then reports the shutdown.
        let _ = self.tx.send(AppendJob { batches, reply }).await;
        AppendTicket { rx, count }
    }
}

/// State both stages see.
struct Shared {
    /// Idempotent-producer state as committed to the metadata store. A std
    /// mutex: held for map operations only, never across an await.
    committed: Mutex<HashMap<ProducerKey, ProducerPartitionState>>,
    /// Bumped when a flush fails. Flushes prepared before that assumed the
    /// failed batches would be stored, so they are refused (retriably).
    failures: AtomicU64,
}

/// A flush whose segment is written (or failed to be), awaiting its commit.
struct Prepared {
    epoch: u64,
    jobs: Vec<AppendJob>,
    outcomes: Vec<Vec<Option<BatchOutcome>>>,
    /// (job, batch) of each entry of `index`.
    slots: Vec<(usize, usize)>,
    index: Vec<NewBatch>,
    /// Dead letters of accepted batches, by position in `index`.
    dead: Vec<(usize, Arc<DeadLetters>)>,
    segment_size: i64,
    write: Result<SegmentLoc, String>,
    started: std::time::Instant,
    written: std::time::Duration,
}

/// Stage one: idempotence checks, segment assembly and the object write.
struct Preparer {
    meta: MetaStore,
    segments: Segments,
    shared: Arc<Shared>,
    /// Producer state including flushes not yet committed.
    speculative: HashMap<ProducerKey, ProducerPartitionState>,
    epoch: u64,
    /// Changes when partitions move between brokers (see
    /// [`crate::cluster`]): another broker may have stored batches of a
    /// producer whose state is cached here since.
    placement: watch::Receiver<u64>,
}

/// Stage two: the metadata commit, in flush order, and the replies.
struct Committer {
    meta: MetaStore,
    /// Dead letters are written here, inside the commit transaction.
    segments: Segments,
    commits: watch::Sender<u64>,
    shared: Arc<Shared>,
}

enum Check {
    Accept(Option<ProducerUpdate>),
    Duplicate(i64),
    Reject(ResponseError, String),
}

fn update_of(h: &BatchHeader) -> ProducerUpdate {
    ProducerUpdate {
        producer_id: h.producer_id,
        epoch: h.producer_epoch,
        first_seq: h.base_sequence,
        last_seq: h.last_sequence(),
    }
}

fn committed_state(shared: &Shared, key: &ProducerKey) -> Option<ProducerPartitionState> {
    shared.committed.lock().ok()?.get(key).cloned()
}

impl From<Appended> for BatchOutcome {
    fn from(a: Appended) -> BatchOutcome {
        match a {
            Appended::Ok {
                base_offset,
                log_start,
            } => BatchOutcome::Appended {
                base_offset,
                log_start,
            },
            Appended::Duplicate { base_offset } => BatchOutcome::Appended {
                base_offset,
                log_start: -1,
            },
            Appended::Refused { error, message } => BatchOutcome::Failed { error, message },
            Appended::UnknownPartition => BatchOutcome::Failed {
                error: ResponseError::UnknownTopicOrPartition,
                message: "the topic or partition was deleted".into(),
            },
        }
    }
}

impl Preparer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<AppendJob>,
        out: mpsc::Sender<Prepared>,
        shutdown: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                job = rx.recv() => job,
                _ = shutdown.cancelled() => {
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(first) = first else { break };
            let mut size: usize = first.batches.iter().map(|b| b.bytes.len()).sum();
            let mut jobs = vec![first];
            while size < MAX_FLUSH_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        size += job.batches.iter().map(|b| b.bytes.len()).sum::<usize>();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            let prepared = self.prepare(jobs).await;
            if out.send(prepared).await.is_err() {
                break;
            }
        }
    }

    async fn producer_state(&mut self, key: ProducerKey) -> Option<ProducerPartitionState> {
        if let Some(s) = self.speculative.get(&key) {
            return Some(s.clone());
        }
        match self.meta.producer_state(key.0, key.1, key.2).await {
            Ok(Some(s)) => {
                if let Ok(mut c) = self.shared.committed.lock() {
                    c.entry(key).or_insert_with(|| s.clone());
                }
                self.speculative.insert(key, s.clone());
                Some(s)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load producer state");
                None
            }
        }
    }

    fn check(state: Option<&ProducerPartitionState>, h: &BatchHeader) -> Check {
        let update = update_of(h);
        match check_sequence(state, &update) {
            SequenceCheck::Accept => Check::Accept(Some(update)),
            SequenceCheck::Duplicate(base) => Check::Duplicate(base),
            SequenceCheck::Reject(error, message) => Check::Reject(error, message),
        }
    }

    /// Forgets speculative producer state that may be wrong: all of it
    /// after a failed flush, and what has no batch in flight here after
    /// partitions moved between brokers.
    fn forget_stale_states(&mut self) {
        let failures = self.shared.failures.load(Ordering::Acquire);
        if failures != self.epoch {
            // A flush failed: forget what it would have changed.
            self.epoch = failures;
            self.speculative = self
                .shared
                .committed
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default();
        }
        if self.placement.has_changed().unwrap_or(false) {
            self.placement.mark_unchanged();
            // Keep only states with batches still in flight here; the rest
            // is read again from the store when next needed.
            self.speculative
                .retain(|_, s| s.recent.iter().any(|&(_, _, base)| base < 0));
            if let Ok(mut c) = self.shared.committed.lock() {
                c.clear();
            }
        }
    }

    /// Decides an idempotent batch against its producer's state: accepted
    /// (recording its sequence range as in flight), a duplicate of a stored
    /// or in-flight batch, or rejected. A sequence that looks out of order
    /// is checked again against the store, which another broker may have
    /// written since the state was cached here.
    async fn check_idempotent(&mut self, b: &PendingBatch) -> Check {
        let key = (b.header.producer_id, b.topic_id, b.partition);
        let state = self.producer_state(key).await;
        let mut check = Self::check(state.as_ref(), &b.header);
        if let Check::Reject(ResponseError::OutOfOrderSequenceNumber, _) = check
            && !state
                .as_ref()
                .is_some_and(|s| s.recent.iter().any(|&(_, _, base)| base < 0))
            && let Ok(fresh) = self.meta.producer_state(key.0, key.1, key.2).await
            && fresh != state
        {
            // Another broker stored batches of this producer
            // after its state was cached here.
            match &fresh {
                Some(f) => {
                    self.speculative.insert(key, f.clone());
                    if let Ok(mut c) = self.shared.committed.lock() {
                        c.insert(key, f.clone());
                    }
                }
                None => {
                    self.speculative.remove(&key);
                }
            }
            check = Self::check(fresh.as_ref(), &b.header);
        }
        if let Check::Duplicate(-1) = check {
            // A retry of a batch whose commit may have finished since.
            let first = b.header.base_sequence;
            if let Some(base) = committed_state(&self.shared, &key)
                .and_then(|s| s.recent.iter().find(|e| e.0 == first).map(|e| e.2))
            {
                check = Check::Duplicate(base);
            }
        }
        if let Check::Accept(Some(u)) = &check {
            let s = self.speculative.entry(key).or_default();
            if s.epoch != u.epoch {
                s.recent.clear();
            }
            s.epoch = u.epoch;
            s.recent.push((u.first_seq, u.last_seq, -1));
            if s.recent.len() > PRODUCER_RECENT_BATCHES {
                s.recent.remove(0);
            }
        }
        check
    }

    /// Stage one of a flush: decides each batch of `jobs` (idempotence),
    /// lays the accepted ones end to end in one segment and writes it to
    /// the object store. Nothing is visible until the commit indexes it.
    async fn prepare(&mut self, jobs: Vec<AppendJob>) -> Prepared {
        self.forget_stale_states();
        let mut outcomes: Vec<Vec<Option<BatchOutcome>>> =
            jobs.iter().map(|j| vec![None; j.batches.len()]).collect();
        let mut segment = BytesMut::new();
        let mut index: Vec<NewBatch> = Vec::new();
        let mut slots: Vec<(usize, usize)> = Vec::new();
        let mut dead: Vec<(usize, Arc<DeadLetters>)> = Vec::new();

        for (j, job) in jobs.iter().enumerate() {
            for (i, b) in job.batches.iter().enumerate() {
                // Markers carry no sequence: the coordinator writes them.
                let check = if b.header.is_idempotent() && !b.header.is_control() {
                    self.check_idempotent(b).await
                } else {
                    Check::Accept(None)
                };
                match check {
                    Check::Accept(producer) => {
                        if let Some(letters) = &b.dead_letters {
                            dead.push((index.len(), letters.clone()));
                        }
                        index.push(b.index_entry(segment.len() as i64, producer));
                        segment.extend_from_slice(&b.bytes);
                        slots.push((j, i));
                    }
                    Check::Duplicate(base) if base >= 0 => {
                        outcomes[j][i] = Some(BatchOutcome::Appended {
                            base_offset: base,
                            log_start: -1,
                        });
                    }
                    Check::Duplicate(_) => {
                        outcomes[j][i] = Some(BatchOutcome::Failed {
                            error: ResponseError::DuplicateSequenceNumber,
                            message: "batch is a retry of one still being stored".into(),
                        });
                    }
                    Check::Reject(error, message) => {
                        tracing::info!(%message, "produce batch rejected");
                        outcomes[j][i] = Some(BatchOutcome::Failed { error, message });
                    }
                }
            }
        }

        let started = std::time::Instant::now();
        let segment_size = segment.len() as i64;
        let write = if index.is_empty() {
            Err("nothing to write".to_string())
        } else {
            self.segments
                .put(segment.freeze())
                .await
                .map_err(|e| format!("cannot write segment: {e}"))
        };
        Prepared {
            epoch: self.epoch,
            jobs,
            outcomes,
            slots,
            index,
            dead,
            segment_size,
            write,
            started,
            written: started.elapsed(),
        }
    }
}

impl Committer {
    async fn run(self, mut rx: mpsc::Receiver<Prepared>) {
        while let Some(p) = rx.recv().await {
            self.commit(p).await;
        }
    }

    /// Indexes a flush and, in the same transaction, the dead letters of
    /// its stored batches: their headers name the offsets the batches were
    /// just given, so they are encoded and written only now. Holding the
    /// transaction open across that write is confined to flushes that
    /// carry dead letters.
    async fn index_flush(
        &self,
        loc: &SegmentLoc,
        index: &[NewBatch],
        dead: &[(usize, Arc<DeadLetters>)],
    ) -> Result<(Vec<Appended>, ProducerStates), String> {
        let failed = |e: crate::store::meta::MetaError| format!("cannot commit append: {e}");
        let mut tx = self.meta.begin_append().await.map_err(failed)?;
        let (appended, states) = tx.index(loc, index).await.map_err(failed)?;
        let mut segment = BytesMut::new();
        let mut letters = Vec::new();
        for (pos, dl) in dead {
            // A batch whose partition is gone stored nothing; nor do its
            // dead letters.
            let Some(Appended::Ok { base_offset, .. }) = appended.get(*pos) else {
                continue;
            };
            let batch = dl
                .encode(*base_offset)
                .map_err(|e| format!("cannot encode dead letters: {e}"))?;
            letters.push(NewBatch {
                topic_id: dl.topic_id,
                partition: dl.partition,
                offsets: batch.header.offset_span(),
                max_timestamp: batch.header.max_timestamp,
                pos: segment.len() as i64,
                len: batch.bytes.len() as i64,
                producer: None,
                txn: None,
            });
            segment.extend_from_slice(&batch.bytes);
        }
        if !letters.is_empty() {
            let dloc = self
                .segments
                .put(segment.freeze())
                .await
                .map_err(|e| format!("cannot write dead letters: {e}"))?;
            let (stored, _) = tx.index(&dloc, &letters).await.map_err(failed)?;
            if stored.contains(&Appended::UnknownPartition) {
                // Dropping the transaction rolls the flush back; the
                // producers retry and the dead-letter topic is created again.
                return Err("a dead-letter topic was deleted during the append; retry".into());
            }
        }
        tx.commit().await.map_err(failed)?;
        Ok((appended, states))
    }

    /// Commits one prepared flush (unless an earlier one failed after it
    /// was prepared, or its segment write failed), then answers every
    /// batch of its jobs: its offsets, or the error to retry on.
    async fn commit(&self, p: Prepared) {
        let Prepared {
            epoch,
            jobs,
            mut outcomes,
            slots,
            index,
            dead,
            segment_size,
            write,
            started,
            written,
        } = p;
        if !index.is_empty() {
            let result = if epoch != self.shared.failures.load(Ordering::Acquire) {
                Err("an earlier append failed; retry".to_string())
            } else {
                match write {
                    Err(e) => Err(e),
                    Ok(loc) => self.index_flush(&loc, &index, &dead).await,
                }
            };
            let total = started.elapsed();
            metrics::histogram!("sluice_flush_seconds").record(total.as_secs_f64());
            metrics::counter!("sluice_flush_bytes_total").increment(segment_size.max(0) as u64);
            metrics::counter!("sluice_flushes_total").increment(1);
            tracing::trace!(
                jobs = jobs.len(),
                batches = index.len(),
                bytes = segment_size,
                write_us = written.as_micros() as u64,
                total_us = total.as_micros() as u64,
                "flush"
            );
            match result {
                Ok((appended, states)) => {
                    for (pos, letters) in &dead {
                        if let Some(Appended::Ok { .. }) = appended.get(*pos) {
                            metrics::counter!("sluice_validation_dead_lettered_records_total", "topic" => letters.source_topic.clone())
                                .increment(letters.records.len() as u64);
                        }
                    }
                    for (&(j, i), a) in slots.iter().zip(appended) {
                        outcomes[j][i] = Some(BatchOutcome::from(a));
                    }
                    if let Ok(mut c) = self.shared.committed.lock() {
                        c.extend(states);
                    }
                    self.commits.send_modify(|v| *v += 1);
                }
                Err(message) => {
                    metrics::counter!("sluice_flush_errors_total").increment(1);
                    if epoch == self.shared.failures.load(Ordering::Acquire) {
                        tracing::error!(%message, "append failed; producers will retry");
                        self.shared.failures.fetch_add(1, Ordering::AcqRel);
                    }
                    for &(j, i) in &slots {
                        outcomes[j][i] = Some(BatchOutcome::Failed {
                            error: ResponseError::KafkaStorageError,
                            message: message.clone(),
                        });
                    }
                }
            }
        }

        for (job, outs) in jobs.into_iter().zip(outcomes) {
            let outs = outs
                .into_iter()
                .map(|o| {
                    o.unwrap_or(BatchOutcome::Failed {
                        error: ResponseError::UnknownServerError,
                        message: "batch was not decided".into(),
                    })
                })
                .collect();
            let _ = job.reply.send(outs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader {
            batch_length: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: 5,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn sequence_checks() {
        let state = ProducerPartitionState {
            epoch: 1,
            recent: vec![(0, 9, 100), (10, 19, 110)],
        };
        assert!(matches!(
            Preparer::check(Some(&state), &header(1, 20, 5)),
            Check::Accept(_)
        ));
        assert!(matches!(
            Preparer::check(Some(&state), &header(1, 10, 10)),
            Check::Duplicate(110)
        ));
        assert!(matches!(
            Preparer::check(Some(&state), &header(1, 25, 5)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber, _)
        ));
        assert!(matches!(
            Preparer::check(Some(&state), &header(0, 20, 5)),
            Check::Reject(ResponseError::InvalidProducerEpoch, _)
        ));
        assert!(matches!(
            Preparer::check(Some(&state), &header(2, 0, 5)),
            Check::Accept(_)
        ));
        assert!(matches!(
            Preparer::check(Some(&state), &header(2, 3, 5)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber, _)
        ));
        assert!(matches!(
            Preparer::check(None, &header(0, 7, 1)),
            Check::Accept(_)
        ));
    }
}
