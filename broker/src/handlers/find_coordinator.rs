//! FindCoordinator: the broker holding the group's lease, or, while the
//! lease is free, the broker that should take it (see [`crate::cluster`]).
//! v4+ asks for many keys at once.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::cluster::GROUP_LEASE;
use crate::security::Protocol;
use crate::state::Broker;

pub async fn handle(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
    listener: Protocol,
) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in req.coordinator_keys {
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
        let owner = broker.cluster.owner(GROUP_LEASE, req.key.as_str()).await;
        resp.node_id = BrokerId(owner.id);
        let (host, port) = broker.advertised(&owner, listener);
        resp.host = str_bytes(host);
        resp.port = port;
    }
    resp
}
