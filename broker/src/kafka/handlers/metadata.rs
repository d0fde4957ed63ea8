//! Metadata: the live brokers and the topics. Each partition's leader is
//! the broker rendezvous hashing picks for it (see [`crate::cluster`]);
//! every live broker is listed as a replica in sync, since any of them can
//! serve the partition from the shared stores.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{LEADER_EPOCH, str_bytes};
use crate::common::validate_topic_name;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::store::meta::TopicRecord;

pub async fn handle(
    broker: &Broker,
    req: MetadataRequest,
    version: i16,
    ctx: &ConnContext,
) -> MetadataResponse {
    let listener = ctx.listener;
    let mut resp = MetadataResponse::default();
    let live = broker.cluster.live();
    resp.brokers = live
        .iter()
        .map(|l| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(l.id);
            let (host, port) = broker.advertised(l, listener);
            b.host = str_bytes(host);
            b.port = port;
            b
        })
        .collect();
    resp.cluster_id = Some(str_bytes(broker.cluster_id.clone()));
    resp.controller_id = BrokerId(live.first().map_or(broker.config.broker_id, |b| b.id));

    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    // Kafka auto-creates from Metadata only when the client allows it (v4+).
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    match wanted {
        None => match broker.meta.list_topics().await {
            Ok(all) => {
                // Topics the principal may not describe are left out.
                for t in all.iter() {
                    if ctx
                        .shows(broker, Operation::Describe, ResourceType::Topic, &t.name)
                        .await
                    {
                        resp.topics.push(topic_entry(broker, t));
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list topics"),
        },
        Some(list) => {
            for t in list {
                let name = match (&t.name, t.topic_id.is_nil()) {
                    (Some(n), _) => n.to_string(),
                    (None, false) => match broker.topic_by_uuid(t.topic_id).await {
                        Ok(Some(found)) => found.name.clone(),
                        _ => {
                            let mut e = MetadataResponseTopic::default();
                            e.topic_id = t.topic_id;
                            e.error_code = ResponseError::UnknownTopicId.code();
                            resp.topics.push(e);
                            continue;
                        }
                    },
                    (None, true) => continue,
                };
                resp.topics
                    .push(lookup(broker, ctx, &name, allow_create).await);
            }
        }
    }
    resp
}

async fn lookup(
    broker: &Broker,
    ctx: &ConnContext,
    name: &str,
    allow_create: bool,
) -> MetadataResponseTopic {
    let error = |code: ResponseError| {
        let mut e = MetadataResponseTopic::default();
        e.name = Some(TopicName(str_bytes(name)));
        e.error_code = code.code();
        e
    };
    if validate_topic_name(name).is_err() {
        return error(ResponseError::InvalidTopicException);
    }
    if !ctx
        .may(broker, Operation::Describe, ResourceType::Topic, name)
        .await
    {
        return error(ResponseError::TopicAuthorizationFailed);
    }
    // Auto-creation needs CREATE on the cluster or on the topic.
    let allow_create = allow_create
        && (ctx.may_on_cluster(broker, Operation::Create).await
            || ctx
                .may(broker, Operation::Create, ResourceType::Topic, name)
                .await);
    match broker.topic_or_create(name, allow_create).await {
        Ok(Some(t)) => topic_entry(broker, &t),
        Ok(None) => error(ResponseError::UnknownTopicOrPartition),
        Err(e) => error(e.code),
    }
}

fn topic_entry(broker: &Broker, t: &TopicRecord) -> MetadataResponseTopic {
    let live = broker.cluster.live();
    let mut e = MetadataResponseTopic::default();
    e.name = Some(TopicName(str_bytes(t.name.clone())));
    e.topic_id = t.uuid;
    e.partitions = (0..t.partitions)
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            let leader = BrokerId(broker.cluster.leader(&t.name, p).id);
            mp.partition_index = p;
            mp.leader_id = leader;
            mp.leader_epoch = LEADER_EPOCH;
            mp.replica_nodes = std::iter::once(leader)
                .chain(live.iter().map(|b| BrokerId(b.id)).filter(|b| *b != leader))
                .collect();
            mp.isr_nodes = mp.replica_nodes.clone();
            mp
        })
        .collect();
    e
}
