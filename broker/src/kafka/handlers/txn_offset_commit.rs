//! TxnOffsetCommit: offsets committed inside the producer's transaction,
//! visible to the group only when the transaction commits. Sent to the
//! group's coordinator; with the consumer's generation and member id
//! (KIP-447) a zombie consumer's commit is fenced as in OffsetCommit.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::coordinator::groups::CommitAuth;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::store::txn::TxnOffset;

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let id = req.transactional_id.as_str();
    let group = req.group_id.to_string();
    let request_error = if !ctx
        .may(broker, Operation::Write, ResourceType::TransactionalId, id)
        .await
    {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx
        .may(broker, Operation::Read, ResourceType::Group, &group)
        .await
    {
        Some(ResponseError::GroupAuthorizationFailed)
    } else if req.member_id.is_empty() && req.generation_id < 0 {
        // A producer that names only the group: no member to fence, but
        // only the group's coordinator stores its offsets.
        broker.groups.claim(&group).await.err()
    } else {
        broker
            .groups
            .authorize_commit(&CommitAuth {
                group_id: group.clone(),
                generation_id: req.generation_id,
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .await
    };
    let mut resp = TxnOffsetCommitResponse::default();
    let mut offsets = Vec::new();
    for t in &req.topics {
        let mut tr = TxnOffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        let readable = ctx
            .may(broker, Operation::Read, ResourceType::Topic, &t.name)
            .await;
        let topic = broker.topic(&t.name).await.ok().flatten();
        for p in &t.partitions {
            let mut pr = TxnOffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            let error = if let Some(e) = request_error {
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
                offsets.push(TxnOffset {
                    group_id: group.clone(),
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
                None
            };
            pr.error_code = error.map_or(0, |e| e.code());
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    if !offsets.is_empty()
        && let Err((code, message)) = broker
            .txns
            .commit_offsets(id, req.producer_id.0, req.producer_epoch, &offsets)
            .await
    {
        tracing::info!(transactional_id = id, ?code, %message, "TxnOffsetCommit refused");
        for t in &mut resp.topics {
            for p in &mut t.partitions {
                if p.error_code == 0 {
                    p.error_code = super::fenced_for(code, version, 3).code();
                }
            }
        }
    }
    resp
}
