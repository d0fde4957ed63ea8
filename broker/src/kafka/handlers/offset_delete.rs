//! OffsetDelete: drop a group's committed offsets for partitions of topics
//! its members no longer subscribe to.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let mut resp = OffsetDeleteResponse::default();
    if !ctx
        .may(
            broker,
            Operation::Delete,
            ResourceType::Group,
            &req.group_id,
        )
        .await
    {
        resp.error_code = ResponseError::GroupAuthorizationFailed.code();
        return resp;
    }
    let known = broker
        .groups
        .list()
        .await
        .iter()
        .any(|g| g.group_id == req.group_id.as_str());
    if !known {
        resp.error_code = ResponseError::GroupIdNotFound.code();
        return resp;
    }
    let subscribed = broker.groups.subscribed_topics(&req.group_id).await;
    for t in req.topics {
        let mut tr = OffsetDeleteResponseTopic::default();
        tr.name = t.name.clone();
        let readable = ctx
            .may(broker, Operation::Read, ResourceType::Topic, &t.name)
            .await;
        for p in t.partitions {
            let mut pr = OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            if !readable {
                pr.error_code = ResponseError::TopicAuthorizationFailed.code();
            } else if subscribed.contains(t.name.as_str()) {
                pr.error_code = ResponseError::GroupSubscribedToTopic.code();
            } else if let Err(e) = broker
                .meta
                .delete_offsets(&req.group_id, &t.name, p.partition_index)
                .await
            {
                tracing::error!(error = %e, "cannot delete offsets");
                pr.error_code = ResponseError::CoordinatorNotAvailable.code();
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
