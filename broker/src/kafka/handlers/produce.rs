//! Produce: check each partition's record set, queue its batches for group
//! commit, and answer once they are durable (acks=1/all) or at once (acks=0).
//!
//! With one copy of the data in the object store, acks=1 and acks=all mean
//! the same thing here: acknowledged only after the metadata commit.
//!
//! On a schema-bound topic in `dlq` validation mode, a batch with invalid
//! records is stored without them and answered as a success; the invalid
//! records travel with it to the flusher as dead letters (see
//! [`crate::log::dead_letter`]).

use std::sync::Arc;

use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

use super::{Pending, respond, str_bytes};
use crate::common::{KafkaError, validate_topic_name};
use crate::kafka::codec::RequestFrame;
use crate::kafka::session::ConnContext;
use crate::log::append::{BatchOutcome, PendingBatch};
use crate::log::batch::{self, CheckedBatch};
use crate::log::dead_letter::{DeadLetters, DeadRecord};
use crate::node::state::SharedBroker;
use crate::policy::validation::{Mode, RecordError, Refusal, Rejection};
use crate::security::acl::{Operation, ResourceType};
use crate::store::meta::{TopicRecord, TxnPart};
use crate::store::topic_config::TopicConfig;
use tokio::sync::oneshot;

/// Where one partition's answer comes from.
enum Part {
    Done(PartitionProduceResponse),
    /// Index range of this partition's batches in the submitted job.
    Queued {
        index: i32,
        first: usize,
        count: usize,
    },
}

fn failed(index: i32, err: KafkaError) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default();
    p.index = index;
    p.error_code = err.code.code();
    p.base_offset = -1;
    p.error_message = Some(str_bytes(err.message));
    p
}

/// Returns the work for one produce request. Called by the connection reader
/// in request order; the returned future checks and validates the batches
/// concurrently with later requests, then queues them only after the
/// previous produce request of the connection has queued its own.
pub fn start(
    broker: SharedBroker,
    ctx: &Arc<ConnContext>,
    req: RequestFrame,
    body: ProduceRequest,
) -> Pending {
    let ctx = ctx.clone();
    let (queued, queued_rx) = oneshot::channel::<()>();
    let previous = ctx
        .produce_chain
        .lock()
        .map(|mut c| c.replace(queued_rx))
        .unwrap_or(None);
    async move { run(broker, &ctx, req, body, previous, queued).await }.boxed()
}

/// The produce path of one request: check every partition's record set
/// ([`check_partition`]), wait for the connection's previous produce to
/// queue, queue this one's batches for group commit, wait for the commit,
/// then account the request against the client's quota and answer.
async fn run(
    broker: SharedBroker,
    ctx: &ConnContext,
    req: RequestFrame,
    body: ProduceRequest,
    previous: Option<oneshot::Receiver<()>>,
    queued: oneshot::Sender<()>,
) -> Result<Option<bytes::Bytes>, crate::kafka::codec::CodecError> {
    let received = std::time::Instant::now();
    let acks = body.acks;
    let mut topics: Vec<(TopicName, Vec<Part>)> = Vec::new();
    let mut job: Vec<PendingBatch> = Vec::new();

    let transactional = body.transactional_id.as_deref().filter(|id| !id.is_empty());
    if let Some(id) = transactional
        && !ctx
            .may(&broker, Operation::Write, ResourceType::TransactionalId, id)
            .await
    {
        topics = refuse_all(
            body.topic_data,
            KafkaError::new(
                ResponseError::TransactionalIdAuthorizationFailed,
                format!("{} may not write transactional id '{id}'", ctx.principal()),
            ),
        );
    } else {
        for t in body.topic_data {
            let name = t.name.to_string();
            let topic = writable_topic(&broker, ctx, &name).await;
            let mut parts = Vec::with_capacity(t.partition_data.len());
            for p in t.partition_data {
                let part = match &topic {
                    Err(e) => Part::Done(failed(p.index, e.clone())),
                    Ok(None) => Part::Done(failed(
                        p.index,
                        KafkaError::new(
                            ResponseError::UnknownTopicOrPartition,
                            format!("topic '{name}' does not exist"),
                        ),
                    )),
                    Ok(Some(topic)) => {
                        check_partition(&broker, &name, topic, p, transactional.is_some(), &mut job)
                            .await
                    }
                };
                parts.push(part);
            }
            topics.push((t.name, parts));
        }
    }

    if let Some(previous) = previous {
        // An error only means the previous request ended without queueing.
        let _ = previous.await;
    }
    let ticket = if job.is_empty() {
        None
    } else {
        Some(broker.appender.submit(job).await)
    };
    let _ = queued.send(());

    let outcomes = match ticket {
        Some(t) => t.wait().await,
        None => Vec::new(),
    };
    metrics::histogram!("sluice_produce_latency_seconds").record(received.elapsed().as_secs_f64());
    // Kafka measures a producer's byte rate by request size, after the
    // append; over the quota, the answer carries the throttle time and
    // the connection is not read for that long.
    let client_id = req.header.client_id.as_deref().unwrap_or("");
    let (throttle, _) = broker
        .quotas
        .record(
            crate::policy::quotas::Kind::Produce,
            &ctx.principal(),
            client_id,
            req.body.len(),
        )
        .await;
    ctx.throttle(throttle);
    if acks == 0 {
        return Ok(None);
    }
    let mut resp = answer(topics, &outcomes);
    resp.throttle_time_ms = throttle;
    respond(&req, &resp)
}

/// The response: each partition's own error, or the outcome of its
/// batches in the submitted job.
fn answer(topics: Vec<(TopicName, Vec<Part>)>, outcomes: &[BatchOutcome]) -> ProduceResponse {
    let mut resp = ProduceResponse::default();
    for (name, parts) in topics {
        let mut tr = TopicProduceResponse::default();
        tr.name = name;
        for part in parts {
            tr.partition_responses.push(match part {
                Part::Done(p) => p,
                Part::Queued {
                    index,
                    first,
                    count,
                } => partition_result(index, &outcomes[first..first + count]),
            });
        }
        resp.responses.push(tr);
    }
    resp
}

/// Every partition of the request fails with `error`.
fn refuse_all(data: Vec<TopicProduceData>, error: KafkaError) -> Vec<(TopicName, Vec<Part>)> {
    data.into_iter()
        .map(|t| {
            let parts = t
                .partition_data
                .iter()
                .map(|p| Part::Done(failed(p.index, error.clone())))
                .collect();
            (t.name, parts)
        })
        .collect()
}

/// The topic a produce writes to, if its name is valid, the principal may
/// write to it and it exists. As in Kafka, topics are auto-created by
/// Metadata requests, not by Produce.
async fn writable_topic(
    broker: &SharedBroker,
    ctx: &ConnContext,
    name: &str,
) -> Result<Option<Arc<TopicRecord>>, KafkaError> {
    validate_topic_name(name)?;
    if !ctx
        .may(broker, Operation::Write, ResourceType::Topic, name)
        .await
    {
        return Err(KafkaError::new(
            ResponseError::TopicAuthorizationFailed,
            format!("{} may not write to topic '{name}'", ctx.principal()),
        ));
    }
    broker.topic(name).await
}

/// Checks one partition's record set (partition exists, batches well
/// formed and within `max.message.bytes`, records valid for the topic's
/// schema, no control batches, transactional batches only in a
/// transactional request and idempotent) and appends its batches to
/// `job`; the answer is [`Part::Queued`] with their place in it, or the
/// partition's error.
async fn check_partition(
    broker: &SharedBroker,
    name: &str,
    topic: &TopicRecord,
    p: PartitionProduceData,
    transactional: bool,
    job: &mut Vec<PendingBatch>,
) -> Part {
    if p.index < 0 || p.index >= topic.partitions {
        return Part::Done(failed(
            p.index,
            KafkaError::new(
                ResponseError::UnknownTopicOrPartition,
                format!(
                    "topic '{name}' has {} partitions; partition {} does not exist",
                    topic.partitions, p.index
                ),
            ),
        ));
    }
    let records = p.records.unwrap_or_default();
    let batches = match batch::split_and_check(&records, topic.config.max_message_bytes()) {
        Ok(batches) => batches,
        Err(e) => {
            metrics::counter!("sluice_produce_rejected_batches_total", "reason" => format!("{:?}", e.kafka_error())).increment(1);
            tracing::info!(topic = %name, partition = p.index, error = %e, "rejected record set");
            return Part::Done(failed(
                p.index,
                KafkaError::new(e.kafka_error(), e.to_string()),
            ));
        }
    };
    let batches = match validate(broker, topic, p.index, batches).await {
        Ok(batches) => batches,
        Err(p) => return Part::Done(p),
    };
    let bytes: usize = batches.iter().map(|(b, _)| b.bytes.len()).sum();
    let records: i64 = batches
        .iter()
        .map(|(b, _)| b.header.record_count as i64)
        .sum();
    metrics::counter!("sluice_produce_bytes_total", "topic" => name.to_owned())
        .increment(bytes as u64);
    metrics::counter!("sluice_produce_records_total", "topic" => name.to_owned())
        .increment(records as u64);
    if let Some(why) = batches.iter().find_map(|(b, _)| {
        let h = &b.header;
        if h.is_control() {
            Some("control batches are written by the broker, not produced")
        } else if h.is_transactional() != transactional {
            Some("a transactional request must hold transactional batches only, and only it may")
        } else if h.is_transactional() && !h.is_idempotent() {
            Some("a transactional batch needs a producer id")
        } else {
            None
        }
    }) {
        return Part::Done(failed(
            p.index,
            KafkaError::new(ResponseError::InvalidRecord, why),
        ));
    }
    let first = job.len();
    let count = batches.len();
    job.extend(batches.into_iter().map(|(b, dead_letters)| PendingBatch {
        topic_id: topic.id,
        partition: p.index,
        header: b.header,
        txn: b.header.is_transactional().then_some(TxnPart::Data {
            producer_id: b.header.producer_id,
            epoch: b.header.producer_epoch,
        }),
        bytes: b.bytes,
        dead_letters,
    }));
    Part::Queued {
        index: p.index,
        first,
        count,
    }
}

/// A batch to store, with the records taken out of it, if any.
type Checked = (CheckedBatch, Option<Arc<DeadLetters>>);

/// Checks the batches of a schema-bound topic. `Ok` holds what to store: the
/// batches as produced, or in `dlq` mode a batch without its invalid
/// records, which travel with it as dead letters. `Err` is the partition's
/// refusal.
async fn validate(
    broker: &SharedBroker,
    topic: &TopicRecord,
    index: i32,
    batches: Vec<CheckedBatch>,
) -> Result<Vec<Checked>, PartitionProduceResponse> {
    let mode = Mode::of(topic);
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let rejection = match broker.validator.check_batch(topic, &b.bytes).await {
            Ok(()) => {
                out.push((b, None));
                continue;
            }
            Err(rejection) => rejection,
        };
        match (rejection, &mode) {
            (Rejection::Invalid(errors), Mode::DeadLetter(target)) => {
                out.push(dead_letter(broker, topic, index, target, b, errors).await?);
            }
            (rejection, _) => {
                let refusal = Refusal::of(&topic.name, index, b.header.record_count, rejection);
                return Err(refused(index, refusal));
            }
        }
    }
    Ok(out)
}

/// The INVALID_RECORD answer of reject mode, with one error per record;
/// `note` says why a `dlq`-mode topic had to refuse instead.
fn refuse(
    topic: &TopicRecord,
    index: i32,
    b: &CheckedBatch,
    errors: Vec<RecordError>,
    note: Option<&str>,
) -> PartitionProduceResponse {
    let refusal = Refusal::invalid_records(&topic.name, index, b.header.record_count, errors, note);
    refused(index, refusal)
}

/// A refused partition's answer.
fn refused(index: i32, refusal: Refusal) -> PartitionProduceResponse {
    let mut p = failed(index, KafkaError::new(refusal.code, refusal.message));
    p.record_errors = refusal
        .record_errors
        .into_iter()
        .map(|(batch_index, message)| {
            let mut r = BatchIndexAndErrorMessage::default();
            r.batch_index = batch_index;
            r.batch_index_error_message = Some(str_bytes(message));
            r
        })
        .collect();
    p
}

/// `dlq` mode: takes the invalid records out of `b` and binds them for the
/// dead-letter topic `target`, which is created if missing.
async fn dead_letter(
    broker: &SharedBroker,
    topic: &TopicRecord,
    index: i32,
    target: &str,
    b: CheckedBatch,
    errors: Vec<RecordError>,
) -> Result<Checked, PartitionProduceResponse> {
    let dlq = match dead_letter_topic(broker, topic, target).await {
        Ok(t) => t,
        // A misconfigured dead-letter topic will not heal by retrying: the
        // batch is refused as in reject mode, saying why.
        Err(e)
            if matches!(
                e.code,
                ResponseError::InvalidTopicException | ResponseError::InvalidConfig
            ) =>
        {
            let note = format!("dead-letter topic '{target}' cannot be used: {}", e.message);
            return Err(refuse(topic, index, &b, errors, Some(&note)));
        }
        Err(e) => return Err(failed(index, e)),
    };
    let positions: Vec<usize> = errors
        .iter()
        .filter_map(|e| usize::try_from(e.index).ok())
        .collect();
    let split = match batch::remove_records(&b, &positions) {
        Ok(split) => split,
        Err(e) => {
            let message = format!("cannot read the record batch: {e}");
            return Err(refused(
                index,
                Refusal::whole_batch(&topic.name, index, message),
            ));
        }
    };
    let mut errors = errors.into_iter();
    let mut records = Vec::with_capacity(split.removed.len());
    for record in split.removed {
        // Both lists are in record order.
        let error = errors.find(|e| usize::try_from(e.index).ok() == Some(record.index));
        let (reason, subject) = error.map(|e| (e.message, e.subject)).unwrap_or_default();
        records.push(DeadRecord {
            record,
            reason,
            subject,
        });
    }
    tracing::info!(
        topic = %topic.name,
        partition = index,
        dead_letters = records.len(),
        kept = split.kept.header.record_count,
        dead_letter_topic = %dlq.name,
        "invalid records go to the dead-letter topic"
    );
    let letters = DeadLetters {
        topic_id: dlq.id,
        // Records of one source partition stay in order in one partition.
        partition: index.rem_euclid(dlq.partitions.max(1)),
        source_topic: topic.name.clone(),
        source_partition: index,
        codec: b.header.compression(),
        records,
    };
    Ok((split.kept, Some(Arc::new(letters))))
}

/// The dead-letter topic named `name`, created (one partition, no schema
/// binding) when missing.
async fn dead_letter_topic(
    broker: &SharedBroker,
    source: &TopicRecord,
    name: &str,
) -> Result<Arc<TopicRecord>, KafkaError> {
    validate_topic_name(name)?;
    if name == source.name {
        return Err(KafkaError::new(
            ResponseError::InvalidConfig,
            "a topic cannot be its own dead-letter topic",
        ));
    }
    // Read afresh rather than from the cache, which could still hold a topic
    // deleted since; only batches with invalid records come here.
    if let Some(t) = broker.refresh(name).await? {
        return Ok(t);
    }
    match broker.create_topic(name, 1, &TopicConfig::default()).await {
        Ok(t) => Ok(t),
        Err(e) if e.code == ResponseError::TopicAlreadyExists => {
            broker.refresh(name).await?.ok_or_else(|| {
                KafkaError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("dead-letter topic '{name}' was deleted while being created"),
                )
            })
        }
        Err(e) => Err(e),
    }
}

/// Combines the outcomes of one partition's batches into its answer: the
/// base offset of the first batch, or the first error.
fn partition_result(index: i32, outcomes: &[BatchOutcome]) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default();
    p.index = index;
    p.base_offset = -1;
    p.log_append_time_ms = -1;
    p.log_start_offset = -1;
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            BatchOutcome::Appended {
                base_offset,
                log_start,
            } => {
                if p.base_offset < 0 {
                    p.base_offset = *base_offset;
                }
                p.log_start_offset = p.log_start_offset.max(*log_start);
            }
            BatchOutcome::Failed { error, message } => {
                if p.error_code == 0 {
                    p.error_code = error.code();
                    p.error_message = Some(str_bytes(message.clone()));
                }
                tracing::debug!(batch = i, %message, "batch failed");
            }
        }
    }
    if p.error_code != 0 {
        p.base_offset = -1;
    }
    p
}
