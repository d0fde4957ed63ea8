//! DescribeCluster: the brokers and the cluster id.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::state::Broker;

pub async fn handle(
    broker: &Broker,
    _req: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    let id = BrokerId(broker.config.broker_id);
    resp.cluster_id = str_bytes(broker.cluster_id.clone());
    resp.controller_id = id;
    let mut b = DescribeClusterBroker::default();
    b.broker_id = id;
    b.host = str_bytes(broker.config.advertised_host.clone());
    b.port = broker.config.advertised_port;
    resp.brokers.push(b);
    resp
}
