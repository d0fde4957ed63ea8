//! LeaveGroup: one member (v0-2) or a batch of members (v3+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::node::state::Broker;

pub async fn handle(broker: &Broker, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let mut resp = LeaveGroupResponse::default();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    match broker.groups.leave(&req.group_id, members.clone()).await {
        Err(e) => resp.error_code = e.code(),
        Ok(results) => {
            if version >= 3 {
                for ((id, instance), r) in members.into_iter().zip(results) {
                    let mut m = MemberResponse::default();
                    m.member_id = super::str_bytes(id);
                    m.group_instance_id = instance.map(super::str_bytes);
                    m.error_code = r.map(|e| e.code()).unwrap_or(0);
                    resp.members.push(m);
                }
            } else if let Some(Some(e)) = results.first() {
                resp.error_code = e.code();
            }
        }
    }
    resp
}
