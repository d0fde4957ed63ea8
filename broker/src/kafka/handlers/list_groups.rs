//! ListGroups, with the state (v4+) and type (v5+) filters.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

/// Lists every group to a principal with DESCRIBE on the cluster, else
/// the groups it may describe (as Kafka does).
pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    let everything = ctx.may_on_cluster(broker, Operation::Describe).await;
    for g in broker.groups.list().await {
        if !everything
            && !ctx
                .shows(
                    broker,
                    Operation::Describe,
                    ResourceType::Group,
                    &g.group_id,
                )
                .await
        {
            continue;
        }
        let state = g.state.as_str();
        if !req.states_filter.is_empty()
            && !req
                .states_filter
                .iter()
                .any(|s| s.eq_ignore_ascii_case(state))
        {
            continue;
        }
        if !req.types_filter.is_empty()
            && !req
                .types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case("classic"))
        {
            continue;
        }
        let mut l = ListedGroup::default();
        l.group_id = GroupId(str_bytes(g.group_id));
        l.protocol_type = str_bytes(g.protocol_type);
        if version >= 4 {
            l.group_state = str_bytes(state);
        }
        if version >= 5 {
            l.group_type = str_bytes("classic");
        }
        resp.groups.push(l);
    }
    resp
}
