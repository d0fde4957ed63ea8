//! Fetch: read committed batches from each requested partition, long-polling
//! until `min_bytes` are available or `max_wait_ms` passes.
//!
//! Batches are returned whole, as produced; a fetch that starts inside a
//! batch gets that whole batch and the client skips the earlier records, as
//! with Apache Kafka. Size limits follow KIP-74: the first batch is always
//! returned even if it is larger than the limits, so consumers make progress.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tokio::time::Instant;

use super::{Pending, respond};
use crate::common::KafkaError;
use crate::kafka::codec::{CodecError, RequestFrame};
use crate::kafka::session::ConnContext;
use crate::log::read;
use crate::node::state::{Broker, SharedBroker};
use crate::policy::purposes::Purpose;
use crate::security::acl::{Operation, ResourceType};
use crate::store::meta::TopicRecord;

/// The stored grants of a client that declares no purpose: none needed.
static NO_GRANTS: std::sync::LazyLock<std::sync::Arc<crate::security::grants::Granted>> =
    std::sync::LazyLock::new(Default::default);

/// Longest wait honoured, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Fetch, with the byte cap and throttling of the client's quota.
pub(super) fn start(
    broker: SharedBroker,
    ctx: Arc<ConnContext>,
    req: RequestFrame,
) -> Result<Pending, CodecError> {
    let mut body: FetchRequest = req.decode()?;
    Ok(async move {
        let client_id = req.header.client_id.as_deref().unwrap_or("");
        if let Some(cap) = broker
            .quotas
            .max_fetch_bytes(&ctx.principal(), client_id)
            .await
        {
            body.max_bytes = body.max_bytes.min(cap);
        }
        let mut resp = handle(&broker, body, &ctx, client_id).await;
        apply_quota(&broker, &ctx, client_id, &mut resp).await;
        respond(&req, &resp)
    }
    .boxed())
}

pub async fn handle(
    broker: &Broker,
    req: FetchRequest,
    ctx: &ConnContext,
    client_id: &str,
) -> FetchResponse {
    // Stored grants matter only to a client that declares a purpose.
    let stored = if matches!(
        crate::policy::purposes::declared_purpose(client_id),
        Ok(Some(_))
    ) {
        match broker.purpose_grants.all().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "cannot read purpose grants; refusing the fetch");
                return refused(&req, "purpose grants unavailable");
            }
        }
    } else {
        NO_GRANTS.clone()
    };
    let purpose = match ctx.purpose(&broker.config.policies, &stored, client_id) {
        Ok(p) => p,
        Err(why) => return refused(&req, &why),
    };
    // Authorized once per request, not on every wake of a long poll.
    let mut readable = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = if !t.topic_id.is_nil() && t.topic.is_empty() {
            match broker.topic_by_uuid(t.topic_id).await {
                Ok(Some(found)) => found.name.clone(),
                // Unknown ids answer UNKNOWN_TOPIC_ID below.
                _ => {
                    readable.push(true);
                    continue;
                }
            }
        } else {
            t.topic.to_string()
        };
        // Unauthorized topics fail alike whether they exist or not.
        readable.push(
            ctx.may(broker, Operation::Read, ResourceType::Topic, &name)
                .await,
        );
    }
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let started = Instant::now();
    let deadline = started + wait;
    let mut commits = broker.commits.clone();
    loop {
        // Mark the current commit as seen before reading, so a commit that
        // lands while we read wakes the wait below.
        commits.borrow_and_update();
        let (resp, bytes, errors) = read_all(broker, &readable, &req, purpose.as_ref()).await;
        if bytes >= req.min_bytes.max(0) as usize || errors || Instant::now() >= deadline {
            audit(ctx, &resp, purpose.as_ref());
            metrics::counter!("sluice_fetch_bytes_total").increment(bytes as u64);
            metrics::histogram!("sluice_fetch_latency_seconds")
                .record(started.elapsed().as_secs_f64());
            return resp;
        }
        // Appends through this broker wake the wait at once; those through
        // other brokers sharing the store are seen by looking again.
        let look_again = if broker.cluster.live().len() > 1 {
            deadline.min(Instant::now() + CROSS_BROKER_POLL)
        } else {
            deadline
        };
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { return resp },
            _ = tokio::time::sleep_until(look_again) => {}
        }
    }
}

/// How often a long-polling fetch looks for records appended through other
/// brokers.
const CROSS_BROKER_POLL: Duration = Duration::from_millis(100);

/// A partition's answer before anything is known of it.
fn unknown_partition(index: i32) -> PartitionData {
    let mut pd = PartitionData::default();
    pd.partition_index = index;
    pd.high_watermark = -1;
    pd.last_stable_offset = -1;
    pd.log_start_offset = -1;
    pd
}

/// The answer to a connection whose declared purpose was refused: every
/// partition fails authorization (the reason is in the broker's log).
fn refused(req: &FetchRequest, why: &str) -> FetchResponse {
    let mut resp = FetchResponse::default();
    for t in &req.topics {
        let mut tr = FetchableTopicResponse::default();
        tr.topic = t.topic.clone();
        tr.topic_id = t.topic_id;
        for p in &t.partitions {
            let mut pd = unknown_partition(p.partition);
            pd.error_code = ResponseError::TopicAuthorizationFailed.code();
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    tracing::debug!(reason = why, "fetch refused");
    resp
}

/// Records, once per connection and topic, which principal read the topic
/// for which purpose; counts the bytes read per principal, topic and purpose.
fn audit(ctx: &ConnContext, resp: &FetchResponse, purpose: Option<&Purpose>) {
    let purpose = purpose.map_or("none", |p| p.0.as_str());
    for t in &resp.responses {
        let bytes: usize = t
            .partitions
            .iter()
            .filter_map(|p| p.records.as_ref().map(|r| r.len()))
            .sum();
        if bytes == 0 {
            continue;
        }
        let topic = t.topic.as_str();
        metrics::counter!(
            "sluice_audit_read_bytes_total",
            "principal" => ctx.principal().to_string(),
            "topic" => topic.to_owned(),
            "purpose" => purpose.to_owned(),
        )
        .increment(bytes as u64);
        if ctx.first_read_of(topic) {
            tracing::info!(
                target: "sluice::audit",
                principal = %ctx.principal(),
                peer = %ctx.peer,
                topic,
                purpose,
                "read"
            );
        }
    }
}

/// `readable[i]`: the caller may read `req.topics[i]`.
async fn read_all(
    broker: &Broker,
    readable: &[bool],
    req: &FetchRequest,
    purpose: Option<&Purpose>,
) -> (FetchResponse, usize, bool) {
    let mut resp = FetchResponse::default();
    let mut remaining = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let mut errors = false;
    for (i, t) in req.topics.iter().enumerate() {
        let mut tr = FetchableTopicResponse::default();
        tr.topic = t.topic.clone();
        tr.topic_id = t.topic_id;
        let topic = if !readable.get(i).copied().unwrap_or(false) {
            Err(KafkaError::new(ResponseError::TopicAuthorizationFailed, ""))
        } else if !t.topic_id.is_nil() && t.topic.is_empty() {
            broker.topic_by_uuid(t.topic_id).await
        } else {
            broker.topic(&t.topic).await
        };
        for p in &t.partitions {
            let mut pd = unknown_partition(p.partition);
            let result = match &topic {
                Ok(Some(topic)) if p.partition >= 0 && p.partition < topic.partitions => {
                    let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                    read_partition(
                        broker,
                        topic,
                        purpose,
                        Want {
                            partition: p.partition,
                            offset: p.fetch_offset,
                            limit,
                            first_in_response: total == 0,
                            read_committed: req.isolation_level == 1,
                        },
                        &mut pd,
                    )
                    .await
                }
                Ok(_) => Err(KafkaError::new(ResponseError::UnknownTopicOrPartition, "")),
                Err(e) => Err(e.clone()),
            };
            match result {
                Ok(n) => {
                    total += n;
                    remaining = remaining.saturating_sub(n);
                }
                Err(e) => {
                    errors = true;
                    pd.error_code = e.code.code();
                }
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    (resp, total, errors)
}

/// What a fetch asks of one partition.
struct Want {
    partition: i32,
    offset: i64,
    /// Most bytes to add (at least one batch when first in the response).
    limit: usize,
    first_in_response: bool,
    /// `isolation.level=read_committed`: nothing at or past the last stable
    /// offset, and the aborted transactions of what is returned.
    read_committed: bool,
}

/// Fills `pd` for one partition; returns the record bytes added.
async fn read_partition(
    broker: &Broker,
    topic: &TopicRecord,
    purpose: Option<&Purpose>,
    want: Want,
    pd: &mut PartitionData,
) -> Result<usize, KafkaError> {
    let topic_id = topic.id;
    let Want {
        partition,
        offset,
        limit,
        first_in_response,
        read_committed,
    } = want;
    let Some(offsets) = broker.meta.partition_offsets(topic_id, partition).await? else {
        return Err(KafkaError::new(ResponseError::UnknownTopicOrPartition, ""));
    };
    pd.high_watermark = offsets.next_offset;
    pd.last_stable_offset = offsets.last_stable;
    pd.log_start_offset = offsets.log_start;
    if offset < offsets.log_start || offset > offsets.next_offset {
        return Err(KafkaError::new(
            ResponseError::OffsetOutOfRange,
            format!(
                "offset {offset} is outside {}..={}",
                offsets.log_start, offsets.next_offset
            ),
        ));
    }
    // A read_committed consumer reads up to the last stable offset; a
    // read_uncommitted one up to the high watermark.
    let end = if read_committed {
        offsets.last_stable
    } else {
        offsets.next_offset
    };
    if read_committed {
        pd.aborted_transactions = Some(Vec::new());
    }
    if offset >= end || (limit == 0 && !first_in_response) {
        return Ok(0);
    }
    let mut out: Vec<u8> = Vec::new();
    let mut from = offset;
    'outer: loop {
        let locs = broker
            .meta
            .batches_from(topic_id, partition, from, 256)
            .await?;
        if locs.is_empty() {
            break;
        }
        for loc in &locs {
            if loc.base_offset >= end {
                break 'outer;
            }
            let len = loc.len as usize;
            if (!out.is_empty() || !first_in_response) && out.len() + len > limit {
                break 'outer;
            }
            read::append_batch(broker, loc, &mut out).await?;
            from = loc.last_offset + 1;
            if out.len() >= limit {
                break 'outer;
            }
        }
        if locs.len() < 256 {
            break;
        }
    }
    if read_committed && from > offset {
        let aborted = broker
            .meta
            .aborted_txns(topic_id, partition, offset, from)
            .await?;
        pd.aborted_transactions = Some(
            aborted
                .into_iter()
                .map(|a| {
                    let mut t = AbortedTransaction::default();
                    t.producer_id = ProducerId(a.producer_id);
                    t.first_offset = a.first_offset;
                    t
                })
                .collect(),
        );
    }
    let n = out.len();
    let records = broker
        .redactor
        .redact(topic, partition, out.into(), purpose)
        .await?;
    pd.records = Some(records);
    Ok(n)
}

/// Measures the fetched bytes against the client's consumer byte-rate
/// quota. Over it, as in Kafka, the response goes out at once without
/// records (the bytes are not counted), carrying the throttle time, and the
/// connection is not read for that long.
pub async fn apply_quota(
    broker: &Broker,
    ctx: &ConnContext,
    client_id: &str,
    resp: &mut FetchResponse,
) {
    let bytes: usize = resp
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum();
    let (throttle, recorded) = broker
        .quotas
        .record(
            crate::policy::quotas::Kind::Fetch,
            &ctx.principal(),
            client_id,
            bytes,
        )
        .await;
    if throttle > 0 {
        if let Some(r) = recorded {
            broker.quotas.unrecord(r);
        }
        resp.responses.clear();
        resp.throttle_time_ms = throttle;
        ctx.throttle(throttle);
    }
}
