//! FindCoordinator: this broker coordinates every group (and, later,
//! transactional id). v4+ asks for many keys at once.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::state::Broker;

pub async fn handle(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    let id = BrokerId(broker.config.broker_id);
    let host = str_bytes(broker.config.advertised_host.clone());
    let port = broker.config.advertised_port;
    if version >= 4 {
        for key in req.coordinator_keys {
            let mut c = Coordinator::default();
            c.key = key;
            c.node_id = id;
            c.host = host.clone();
            c.port = port;
            resp.coordinators.push(c);
        }
    } else {
        resp.node_id = id;
        resp.host = host;
        resp.port = port;
    }
    resp
}
