//! JoinGroup: hand the request to the group coordinator and wait for the
//! join phase to complete.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use std::sync::Arc;

use futures::FutureExt;
use kafka_protocol::error::ResponseError;

use super::{Pending, may_join, respond, str_bytes};
use crate::coordinator::groups::JoinParams;
use crate::kafka::codec::{CodecError, RequestFrame};
use crate::kafka::session::ConnContext;
use crate::node::state::{Broker, SharedBroker};

/// JoinGroup, with READ on the group required; members are reported by
/// client id and host.
pub(super) fn start(
    broker: SharedBroker,
    ctx: Arc<ConnContext>,
    req: RequestFrame,
) -> Result<Pending, CodecError> {
    let body: JoinGroupRequest = req.decode()?;
    let client_id = req.header.client_id.as_deref().unwrap_or("").to_string();
    // Kafka reports client hosts as "/ADDRESS".
    let host = format!("/{}", ctx.peer.ip());
    Ok(async move {
        if !may_join(&broker, &ctx, &body.group_id).await {
            let mut resp = JoinGroupResponse::default();
            resp.error_code = ResponseError::GroupAuthorizationFailed.code();
            resp.generation_id = -1;
            return respond(&req, &resp);
        }
        let resp = handle(&broker, body, req.version, client_id, host).await;
        respond(&req, &resp)
    }
    .boxed())
}

pub async fn handle(
    broker: &Broker,
    req: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let params = JoinParams {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id,
        client_host,
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: it equals the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let r = broker.groups.join(params).await;
    let mut resp = JoinGroupResponse::default();
    resp.error_code = r.error.map(|e| e.code()).unwrap_or(0);
    resp.generation_id = r.generation_id;
    if version >= 7 {
        resp.protocol_type = r.protocol_type.map(str_bytes);
    }
    // The protocol name is nullable only from v7; older versions send "".
    resp.protocol_name = match r.protocol_name {
        Some(n) => Some(str_bytes(n)),
        None if version < 7 => Some(str_bytes("")),
        None => None,
    };
    resp.leader = str_bytes(r.leader);
    if version >= 9 {
        resp.skip_assignment = r.skip_assignment;
    }
    resp.member_id = str_bytes(r.member_id);
    resp.members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = str_bytes(id);
            if version >= 5 {
                m.group_instance_id = instance.map(str_bytes);
            }
            m.metadata = metadata;
            m
        })
        .collect();
    resp
}
