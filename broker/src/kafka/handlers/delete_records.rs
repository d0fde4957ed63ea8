//! DeleteRecords: move a partition's log start forward.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::authorized_topic;
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        let topic = authorized_topic(broker, ctx, Operation::Delete, &t.name).await;
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            let result = async {
                let topic = match &topic {
                    Ok(Some(t)) if p.partition_index >= 0 && p.partition_index < t.partitions => t,
                    Ok(_) => {
                        return Err(KafkaError::new(ResponseError::UnknownTopicOrPartition, ""));
                    }
                    Err(e) => return Err(e.clone()),
                };
                let offsets = broker
                    .meta
                    .partition_offsets(topic.id, p.partition_index)
                    .await?
                    .ok_or_else(|| KafkaError::new(ResponseError::UnknownTopicOrPartition, ""))?;
                // -1 means "up to the high watermark".
                let target = if p.offset == -1 {
                    offsets.next_offset
                } else {
                    p.offset
                };
                if target < 0 || target > offsets.next_offset {
                    return Err(KafkaError::new(ResponseError::OffsetOutOfRange, ""));
                }
                let start = broker
                    .meta
                    .advance_log_start(topic.id, p.partition_index, target)
                    .await?;
                Ok(start)
            }
            .await;
            match result {
                Ok(start) => pr.low_watermark = start,
                Err(e) => pr.error_code = e.code.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
