//! DescribeGroups: state, protocol and members with their assignments.
//! An unknown group is described as `Dead` with no members, as Kafka does;
//! a group another broker coordinates is answered NOT_COORDINATOR.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use kafka_protocol::error::ResponseError;

use super::str_bytes;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        if !ctx
            .may(broker, Operation::Describe, ResourceType::Group, &id)
            .await
        {
            d.error_code = ResponseError::GroupAuthorizationFailed.code();
            resp.groups.push(d);
            continue;
        }
        if let Err(e) = broker.groups.claim(&id).await {
            d.error_code = e.code();
            resp.groups.push(d);
            continue;
        }
        match broker.groups.summary(&id).await {
            Some(s) => {
                d.group_state = str_bytes(s.state.as_str());
                d.protocol_type = str_bytes(s.protocol_type);
                d.protocol_data = str_bytes(s.protocol);
                d.members = s
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = str_bytes(m.member_id);
                        if version >= 4 {
                            dm.group_instance_id = m.group_instance_id.map(str_bytes);
                        }
                        dm.client_id = str_bytes(m.client_id);
                        dm.client_host = str_bytes(m.client_host);
                        dm.member_metadata = m.metadata;
                        dm.member_assignment = m.assignment;
                        dm
                    })
                    .collect();
            }
            None => {
                let offsets_only = broker
                    .meta
                    .group_ids()
                    .await
                    .is_ok_and(|ids| ids.iter().any(|g| g == id.as_str()));
                d.group_state = str_bytes(if offsets_only { "Empty" } else { "Dead" });
            }
        }
        resp.groups.push(d);
    }
    resp
}
