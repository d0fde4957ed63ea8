//! OffsetForLeaderEpoch: the leader epoch never changes, so the end offset of
//! epoch 0 is the high watermark.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{LEADER_EPOCH, authorized_topic};
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        let topic = authorized_topic(broker, ctx, Operation::Describe, &t.topic).await;
        let denied = matches!(&topic, Err(e) if e.code == ResponseError::TopicAuthorizationFailed);
        let topic = topic.ok().flatten();
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            let offsets = match &topic {
                Some(t) => broker
                    .meta
                    .partition_offsets(t.id, p.partition)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            match offsets {
                _ if denied => e.error_code = ResponseError::TopicAuthorizationFailed.code(),
                None => e.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(_) if p.current_leader_epoch > LEADER_EPOCH => {
                    e.error_code = ResponseError::UnknownLeaderEpoch.code();
                }
                Some(o) => {
                    e.leader_epoch = LEADER_EPOCH;
                    e.end_offset = o.next_offset;
                }
            }
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    resp
}
