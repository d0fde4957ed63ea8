//! DescribeCluster: the live brokers and the cluster id.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::security::Protocol;
use crate::state::Broker;

pub async fn handle(
    broker: &Broker,
    _req: DescribeClusterRequest,
    _version: i16,
    listener: Protocol,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = str_bytes(broker.cluster_id.clone());
    let live = broker.cluster.live();
    // No broker controls anything (all state is in the metadata store);
    // tools want a controller, so the lowest live id is named.
    resp.controller_id = BrokerId(live.first().map_or(broker.config.broker_id, |b| b.id));
    for l in live.iter() {
        let mut b = DescribeClusterBroker::default();
        b.broker_id = BrokerId(l.id);
        let (host, port) = broker.advertised(l, listener);
        b.host = str_bytes(host);
        b.port = port;
        resp.brokers.push(b);
    }
    resp
}
