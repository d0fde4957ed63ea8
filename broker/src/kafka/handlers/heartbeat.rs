//! Heartbeat: keeps a member's session alive and tells it to rejoin when a
//! rebalance starts.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::node::state::Broker;

pub async fn handle(broker: &Broker, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let mut resp = HeartbeatResponse::default();
    if let Some(e) = broker
        .groups
        .heartbeat(
            &req.group_id,
            req.generation_id,
            &req.member_id,
            req.group_instance_id.as_deref(),
        )
        .await
    {
        resp.error_code = e.code();
    }
    resp
}
