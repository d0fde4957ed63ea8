//! OffsetCommit: validated against the group's generation, then stored in
//! the metadata store before the answer.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::coordinator::groups::CommitAuth;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::store::meta::CommittedOffset;

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    let auth = CommitAuth {
        group_id: req.group_id.to_string(),
        generation_id: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
    };
    let group_error = if auth.group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else if !ctx
        .may(broker, Operation::Read, ResourceType::Group, &auth.group_id)
        .await
    {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        broker.groups.authorize_commit(&auth).await
    };
    let mut to_store = Vec::new();
    let mut resp = OffsetCommitResponse::default();
    for t in &req.topics {
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        let readable = ctx
            .may(broker, Operation::Read, ResourceType::Topic, &t.name)
            .await;
        let topic = broker.topic(&t.name).await.ok().flatten();
        for p in &t.partitions {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            let error = if let Some(e) = group_error {
                Some(e)
            } else if !readable {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if topic
                .as_ref()
                .is_none_or(|t| p.partition_index < 0 || p.partition_index >= t.partitions)
            {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
            {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                to_store.push(CommittedOffset {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
                None
            };
            pr.error_code = error.map(|e| e.code()).unwrap_or(0);
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    if !to_store.is_empty()
        && let Err(e) = broker.meta.commit_offsets(&auth.group_id, &to_store).await
    {
        tracing::error!(group = %auth.group_id, error = %e, "cannot store committed offsets");
        for t in &mut resp.topics {
            for p in &mut t.partitions {
                if p.error_code == 0 {
                    p.error_code = ResponseError::CoordinatorNotAvailable.code();
                }
            }
        }
    }
    resp
}
