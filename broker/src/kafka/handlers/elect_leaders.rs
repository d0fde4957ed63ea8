//! ElectLeaders: every partition is led by the one broker that serves it
//! (any broker can, the data being in the shared stores), which is also
//! its preferred leader, so there is never an election to hold. Named
//! partitions answer ELECTION_NOT_NEEDED as Kafka does when the preferred
//! leader already leads; "all partitions" answers with no results, as
//! Kafka leaves out partitions that needed no election.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::str_bytes;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: ElectLeadersRequest,
    _version: i16,
) -> ElectLeadersResponse {
    let mut resp = ElectLeadersResponse::default();
    if !ctx.may_on_cluster(broker, Operation::Alter).await {
        let e = super::cluster_refused(ctx, Operation::Alter);
        resp.error_code = e.code.code();
        return resp;
    }
    if req.election_type != PREFERRED && req.election_type != UNCLEAN {
        resp.error_code = ResponseError::InvalidRequest.code();
        return resp;
    }
    let Some(topics) = req.topic_partitions else {
        return resp;
    };
    for t in topics {
        let topic = broker.topic(&t.topic).await;
        let mut r = ReplicaElectionResult::default();
        r.topic = t.topic.clone();
        for p in t.partitions {
            let mut pr = PartitionResult::default();
            pr.partition_id = p;
            let (code, message) = match &topic {
                Ok(Some(topic)) if p >= 0 && p < topic.partitions => (
                    ResponseError::ElectionNotNeeded,
                    "the preferred leader already leads this partition (every partition has one leader)"
                        .to_string(),
                ),
                Ok(_) => (
                    ResponseError::UnknownTopicOrPartition,
                    format!("partition {}-{p} does not exist", t.topic.as_str()),
                ),
                Err(e) => (e.code, e.message.clone()),
            };
            pr.error_code = code.code();
            pr.error_message = Some(str_bytes(message));
            r.partition_result.push(pr);
        }
        resp.replica_election_results.push(r);
    }
    resp
}
