//! FindCoordinator: the broker holding the group's lease, or, while the
//! lease is free, the broker that should take it (see [`crate::cluster`]).
//! v4+ asks for many keys at once.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use kafka_protocol::error::ResponseError;

use super::str_bytes;
use crate::cluster::GROUP_LEASE;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

/// Whether the caller may describe the group (key type 0) or
/// transactional id (1) `key`; the error to answer if not.
async fn refused(
    broker: &Broker,
    ctx: &ConnContext,
    key_type: i8,
    key: &str,
) -> Option<ResponseError> {
    let (rtype, error) = if key_type == 1 {
        (
            ResourceType::TransactionalId,
            ResponseError::TransactionalIdAuthorizationFailed,
        )
    } else {
        (ResourceType::Group, ResponseError::GroupAuthorizationFailed)
    };
    let ok = ctx.may(broker, Operation::Describe, rtype, key).await;
    (!ok).then_some(error)
}

pub async fn handle(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
    ctx: &ConnContext,
) -> FindCoordinatorResponse {
    let listener = ctx.listener;
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in req.coordinator_keys {
            if let Some(e) = refused(broker, ctx, req.key_type, &key).await {
                let mut c = Coordinator::default();
                c.key = key;
                c.node_id = BrokerId(-1);
                c.error_code = e.code();
                resp.coordinators.push(c);
                continue;
            }
            let owner = broker.cluster.owner(GROUP_LEASE, key.as_str()).await;
            let mut c = Coordinator::default();
            c.key = key;
            c.node_id = BrokerId(owner.id);
            let (host, port) = broker.advertised(&owner, listener);
            c.host = str_bytes(host);
            c.port = port;
            resp.coordinators.push(c);
        }
    } else {
        if let Some(e) = refused(broker, ctx, req.key_type, &req.key).await {
            resp.node_id = BrokerId(-1);
            resp.error_code = e.code();
            return resp;
        }
        let owner = broker.cluster.owner(GROUP_LEASE, req.key.as_str()).await;
        resp.node_id = BrokerId(owner.id);
        let (host, port) = broker.advertised(&owner, listener);
        resp.host = str_bytes(host);
        resp.port = port;
    }
    resp
}
