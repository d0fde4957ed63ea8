//! DeleteGroups: only groups without members (NON_EMPTY_GROUP otherwise).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use kafka_protocol::error::ResponseError;

use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut r = DeletableGroupResult::default();
        r.group_id = id.clone();
        if !ctx
            .may(broker, Operation::Delete, ResourceType::Group, &id)
            .await
        {
            r.error_code = ResponseError::GroupAuthorizationFailed.code();
        } else if let Some(e) = broker.groups.delete(&id).await {
            r.error_code = e.code();
        }
        resp.results.push(r);
    }
    resp
}
