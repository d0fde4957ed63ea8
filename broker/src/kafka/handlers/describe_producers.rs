//! DescribeProducers: the idempotent and transactional producers whose
//! state the metadata store keeps for each partition (the last batches each
//! one wrote, kept for deduplication), with the first offset of a
//! producer's open transaction there.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{authorized_topic, str_bytes};
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let mut resp = DescribeProducersResponse::default();
    for t in req.topics {
        let topic = authorized_topic(broker, ctx, Operation::Read, &t.name).await;
        let mut tr = TopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partition_indexes {
            let mut pr = PartitionResponse::default();
            pr.partition_index = p;
            let producers = match &topic {
                Ok(Some(topic)) if p >= 0 && p < topic.partitions => broker
                    .meta
                    .producers_of(topic.id, p)
                    .await
                    .map_err(KafkaError::from),
                Ok(_) => Err(KafkaError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("partition {}-{p} does not exist", t.name.as_str()),
                )),
                Err(e) => Err(e.clone()),
            };
            match producers {
                Ok(list) => {
                    pr.active_producers = list
                        .into_iter()
                        .map(|s| {
                            let mut ps = ProducerState::default();
                            ps.producer_id = ProducerId(s.producer_id);
                            ps.producer_epoch = s.epoch as i32;
                            ps.last_sequence = s.last_sequence;
                            ps.last_timestamp = s.last_timestamp;
                            ps.coordinator_epoch = -1;
                            ps.current_txn_start_offset = s.txn_start_offset;
                            ps
                        })
                        .collect();
                }
                Err(e) => {
                    pr.error_code = e.code.code();
                    pr.error_message = Some(str_bytes(e.message));
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
