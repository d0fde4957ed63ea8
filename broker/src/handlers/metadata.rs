//! Metadata: brokers and topics. This broker leads every partition.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{LEADER_EPOCH, str_bytes};
use crate::meta::TopicRecord;
use crate::state::{Broker, validate_topic_name};

pub async fn handle(broker: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut resp = MetadataResponse::default();
    let id = BrokerId(broker.config.broker_id);
    let mut b = MetadataResponseBroker::default();
    b.node_id = id;
    b.host = str_bytes(broker.config.advertised_host.clone());
    b.port = broker.config.advertised_port;
    resp.brokers = vec![b];
    resp.cluster_id = Some(str_bytes(broker.cluster_id.clone()));
    resp.controller_id = id;

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
            Ok(all) => resp.topics = all.iter().map(|t| topic_entry(t, id)).collect(),
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
                    .push(lookup(broker, &name, allow_create, id).await);
            }
        }
    }
    resp
}

async fn lookup(
    broker: &Broker,
    name: &str,
    allow_create: bool,
    id: BrokerId,
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
    match broker.topic_or_create(name, allow_create).await {
        Ok(Some(t)) => topic_entry(&t, id),
        Ok(None) => error(ResponseError::UnknownTopicOrPartition),
        Err(e) => error(e.code),
    }
}

fn topic_entry(t: &TopicRecord, id: BrokerId) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default();
    e.name = Some(TopicName(str_bytes(t.name.clone())));
    e.topic_id = t.uuid;
    e.partitions = (0..t.partitions)
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p;
            mp.leader_id = id;
            mp.leader_epoch = LEADER_EPOCH;
            mp.replica_nodes = vec![id];
            mp.isr_nodes = vec![id];
            mp
        })
        .collect();
    e
}
