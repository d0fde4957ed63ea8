//! DescribeCluster: the live brokers and the cluster id.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use kafka_protocol::error::ResponseError;

use super::str_bytes;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    _req: DescribeClusterRequest,
    _version: i16,
    ctx: &ConnContext,
) -> DescribeClusterResponse {
    let listener = ctx.listener;
    let mut resp = DescribeClusterResponse::default();
    if !ctx.may_on_cluster(broker, Operation::Describe).await {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        resp.error_message = Some(str_bytes("DESCRIBE on the cluster is not allowed"));
        return resp;
    }
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
