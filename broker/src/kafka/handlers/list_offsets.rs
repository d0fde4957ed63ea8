//! ListOffsets: earliest, latest, max-timestamp and by-timestamp lookups.
//!
//! Timestamp lookups are exact per record: the batch index narrows the search
//! to one batch, whose records are then decoded.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{LEADER_EPOCH, authorized_topic};
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::log::read;
use crate::node::state::Broker;
use crate::security::acl::Operation;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for t in &req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        let topic = authorized_topic(broker, ctx, Operation::Describe, &t.name).await;
        for p in &t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            let result = match &topic {
                Ok(Some(topic))
                    if p.partition_index >= 0 && p.partition_index < topic.partitions =>
                {
                    lookup(
                        broker,
                        topic.id,
                        p.partition_index,
                        p.timestamp,
                        req.isolation_level == 1,
                    )
                    .await
                }
                Ok(_) => Err(KafkaError::new(ResponseError::UnknownTopicOrPartition, "")),
                Err(e) => Err(e.clone()),
            };
            match result {
                Ok((offset, ts)) => {
                    pr.offset = offset;
                    pr.timestamp = ts;
                    if version >= 4 {
                        pr.leader_epoch = LEADER_EPOCH;
                    }
                }
                Err(e) => pr.error_code = e.code.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

/// Returns (offset, timestamp) for one partition.
async fn lookup(
    broker: &Broker,
    topic_id: i64,
    partition: i32,
    ts: i64,
    read_committed: bool,
) -> Result<(i64, i64), KafkaError> {
    let offsets = broker
        .meta
        .partition_offsets(topic_id, partition)
        .await?
        .ok_or_else(|| KafkaError::new(ResponseError::UnknownTopicOrPartition, ""))?;
    match ts {
        // read_committed: the end is the last stable offset.
        LATEST if read_committed => Ok((offsets.last_stable, -1)),
        LATEST => Ok((offsets.next_offset, -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((offsets.log_start, -1)),
        MAX_TIMESTAMP => {
            let Some(loc) = broker
                .meta
                .max_timestamp_batch(topic_id, partition, offsets.log_start)
                .await?
            else {
                return Ok((-1, -1));
            };
            let records = read::records_of(broker, &loc).await?;
            let best = records
                .iter()
                .filter(|r| r.offset >= offsets.log_start)
                .fold(None::<(i64, i64)>, |best, r| match best {
                    Some((_, t)) if t >= r.timestamp => best,
                    _ => Some((r.offset, r.timestamp)),
                });
            Ok(best.unwrap_or((-1, -1)))
        }
        t if t >= 0 => {
            let mut from = offsets.log_start;
            // Usually one step; more only if a batch's max timestamp came
            // from a record below the log start.
            loop {
                let Some(loc) = broker
                    .meta
                    .first_batch_at_or_after(topic_id, partition, t, from)
                    .await?
                else {
                    // No record at or after the timestamp: Kafka answers -1,
                    // which clients read as "the end of the log".
                    return Ok((-1, -1));
                };
                let records = read::records_of(broker, &loc).await?;
                if let Some(r) = records
                    .iter()
                    .find(|r| r.offset >= offsets.log_start && r.timestamp >= t)
                {
                    return Ok((r.offset, r.timestamp));
                }
                from = loc.last_offset + 1;
            }
        }
        other => Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("unsupported ListOffsets timestamp {other}"),
        )),
    }
}
