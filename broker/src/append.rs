//! The produce path below the handler: group commit of batches from every
//! connection into one segment object and one metadata transaction.
//!
//! ```text
//!  connections ──AppendJob──► queue ──► flusher (one task)
//!                                         1. idempotence checks (sequence, epoch)
//!                                         2. concatenate accepted batches → segment
//!                                         3. put segment in the object store   (durable first)
//!                                         4. metadata txn: assign offsets, index batches
//!                                         5. reply to every job, wake waiting fetches
//! ```
//!
//! The flusher takes everything queued when it becomes free, so the window is
//! as short as one flush when idle and grows with load (no timer). Only one
//! flush runs at a time, which keeps the in-memory producer state equal to
//! what is committed.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::batch::BatchHeader;
use crate::meta::{
    Appended, MetaStore, NewBatch, PRODUCER_RECENT_BATCHES, ProducerPartitionState, ProducerUpdate,
};
use crate::objects::Segments;

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
        shutdown: CancellationToken,
    ) -> (Appender, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_JOBS);
        let flusher = Flusher {
            meta,
            segments,
            commits,
            producers: HashMap::new(),
        };
        let handle = tokio::spawn(flusher.run(rx, shutdown));
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

type ProducerKey = (i64, i64, i32);

struct Flusher {
    meta: MetaStore,
    segments: Segments,
    commits: watch::Sender<u64>,
    /// Committed idempotent-producer state, loaded from the store on first use.
    producers: HashMap<ProducerKey, ProducerPartitionState>,
}

enum Check {
    Accept(Option<ProducerUpdate>),
    Duplicate(i64),
    Reject(ResponseError, String),
}

impl Flusher {
    async fn run(mut self, mut rx: mpsc::Receiver<AppendJob>, shutdown: CancellationToken) {
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
            self.flush(jobs).await;
        }
        tracing::debug!("append flusher stopped");
    }

    async fn producer_state(&mut self, key: ProducerKey) -> Option<ProducerPartitionState> {
        if let Some(s) = self.producers.get(&key) {
            return Some(s.clone());
        }
        match self.meta.producer_state(key.0, key.1, key.2).await {
            Ok(Some(s)) => {
                self.producers.insert(key, s.clone());
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
        let update = ProducerUpdate {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
        };
        let Some(state) = state else {
            // No history for this producer here (new, or expired): accept.
            return Check::Accept(Some(update));
        };
        if h.producer_epoch < state.epoch {
            return Check::Reject(
                ResponseError::InvalidProducerEpoch,
                format!(
                    "producer {} epoch {} is older than the current epoch {}",
                    h.producer_id, h.producer_epoch, state.epoch
                ),
            );
        }
        if h.producer_epoch > state.epoch {
            if h.base_sequence != 0 {
                return Check::Reject(
                    ResponseError::OutOfOrderSequenceNumber,
                    format!(
                        "new epoch {} of producer {} must start at sequence 0, got {}",
                        h.producer_epoch, h.producer_id, h.base_sequence
                    ),
                );
            }
            return Check::Accept(Some(update));
        }
        if let Some(&(_, _, base)) = state
            .recent
            .iter()
            .find(|(first, last, _)| *first == h.base_sequence && *last == update.last_seq)
        {
            return Check::Duplicate(base);
        }
        let expected = match state.recent.last() {
            Some(&(_, last, _)) if last == i32::MAX => 0,
            Some(&(_, last, _)) => last + 1,
            None => h.base_sequence,
        };
        if h.base_sequence != expected {
            return Check::Reject(
                ResponseError::OutOfOrderSequenceNumber,
                format!(
                    "producer {} sent sequence {} but {} was expected",
                    h.producer_id, h.base_sequence, expected
                ),
            );
        }
        Check::Accept(Some(update))
    }

    async fn flush(&mut self, jobs: Vec<AppendJob>) {
        // Outcomes per job, filled in as batches are decided.
        let mut outcomes: Vec<Vec<Option<BatchOutcome>>> =
            jobs.iter().map(|j| vec![None; j.batches.len()]).collect();
        let mut segment = BytesMut::new();
        let mut index: Vec<NewBatch> = Vec::new();
        let mut slots: Vec<(usize, usize)> = Vec::new();
        // Producer state as it will be once this flush commits.
        let mut pending: HashMap<ProducerKey, ProducerPartitionState> = HashMap::new();

        for (j, job) in jobs.iter().enumerate() {
            for (i, b) in job.batches.iter().enumerate() {
                let check = if b.header.is_idempotent() {
                    let key = (b.header.producer_id, b.topic_id, b.partition);
                    let state = match pending.get(&key) {
                        Some(s) => Some(s.clone()),
                        None => self.producer_state(key).await,
                    };
                    let check = Self::check(state.as_ref(), &b.header);
                    if let Check::Accept(Some(u)) = &check {
                        let mut s = state.unwrap_or_default();
                        if s.epoch != u.epoch {
                            s.recent.clear();
                        }
                        s.epoch = u.epoch;
                        // The base offset is filled in after the commit.
                        s.recent.push((u.first_seq, u.last_seq, -1));
                        if s.recent.len() > PRODUCER_RECENT_BATCHES {
                            s.recent.remove(0);
                        }
                        pending.insert(key, s);
                    }
                    check
                } else {
                    Check::Accept(None)
                };
                match check {
                    Check::Accept(producer) => {
                        index.push(NewBatch {
                            topic_id: b.topic_id,
                            partition: b.partition,
                            record_count: b.header.record_count,
                            max_timestamp: b.header.max_timestamp,
                            pos: segment.len() as i64,
                            len: b.bytes.len() as i64,
                            producer,
                        });
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

        if !index.is_empty() {
            let key = Segments::new_key();
            let size = segment.len() as i64;
            let result = match self.segments.put(&key, segment.freeze()).await {
                Err(e) => Err(format!("cannot write segment: {e}")),
                Ok(()) => self
                    .meta
                    .commit_append(&key, size, &index)
                    .await
                    .map_err(|e| format!("cannot commit append: {e}")),
            };
            match result {
                Ok(appended) => {
                    for (n, (&(j, i), a)) in slots.iter().zip(appended).enumerate() {
                        outcomes[j][i] = Some(match a {
                            Appended::Ok {
                                base_offset,
                                log_start,
                            } => {
                                if let Some(p) = &index[n].producer {
                                    let key =
                                        (p.producer_id, index[n].topic_id, index[n].partition);
                                    if let Some(s) = pending.get_mut(&key)
                                        && let Some(e) = s
                                            .recent
                                            .iter_mut()
                                            .find(|e| e.0 == p.first_seq && e.2 == -1)
                                    {
                                        e.2 = base_offset;
                                    }
                                }
                                BatchOutcome::Appended {
                                    base_offset,
                                    log_start,
                                }
                            }
                            Appended::UnknownPartition => BatchOutcome::Failed {
                                error: ResponseError::UnknownTopicOrPartition,
                                message: "the topic or partition was deleted".into(),
                            },
                        });
                    }
                    self.producers.extend(pending);
                    self.commits.send_modify(|v| *v += 1);
                }
                Err(message) => {
                    tracing::error!(%message, "append failed; producers will retry");
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
            Flusher::check(Some(&state), &header(1, 20, 5)),
            Check::Accept(_)
        ));
        assert!(matches!(
            Flusher::check(Some(&state), &header(1, 10, 10)),
            Check::Duplicate(110)
        ));
        assert!(matches!(
            Flusher::check(Some(&state), &header(1, 25, 5)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber, _)
        ));
        assert!(matches!(
            Flusher::check(Some(&state), &header(0, 20, 5)),
            Check::Reject(ResponseError::InvalidProducerEpoch, _)
        ));
        assert!(matches!(
            Flusher::check(Some(&state), &header(2, 0, 5)),
            Check::Accept(_)
        ));
        assert!(matches!(
            Flusher::check(Some(&state), &header(2, 3, 5)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber, _)
        ));
        assert!(matches!(
            Flusher::check(None, &header(0, 7, 1)),
            Check::Accept(_)
        ));
    }
}
