//! SyncGroup: the leader's assignments go to every member.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use crate::node::state::Broker;

pub async fn handle(broker: &Broker, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let r = broker
        .groups
        .sync(
            &req.group_id,
            req.generation_id,
            &req.member_id,
            req.protocol_type.as_deref(),
            req.protocol_name.as_deref(),
            req.assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        )
        .await;
    let mut resp = SyncGroupResponse::default();
    resp.error_code = r.error.map(|e| e.code()).unwrap_or(0);
    if version >= 5 {
        resp.protocol_type = r.protocol_type.map(str_bytes);
        resp.protocol_name = r.protocol_name.map(str_bytes);
    }
    resp.assignment = r.assignment;
    resp
}
