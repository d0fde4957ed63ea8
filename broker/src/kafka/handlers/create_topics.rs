//! CreateTopics.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::common::{KafkaError, validate_topic_name};
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::store::topic_config::{self, TopicConfig};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    let on_cluster = ctx.may_on_cluster(broker, Operation::Create).await;
    for t in req.topics {
        let name = t.name.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let allowed = on_cluster
            || ctx
                .may(broker, Operation::Create, ResourceType::Topic, &name)
                .await;
        let outcome = if allowed {
            create(broker, &name, &t, req.validate_only).await
        } else {
            Err(KafkaError::new(
                ResponseError::TopicAuthorizationFailed,
                format!(
                    "{} may not create topic '{name}' (needs CREATE on the cluster or the topic)",
                    ctx.principal()
                ),
            ))
        };
        match outcome {
            Ok(_) if version < 5 => {}
            Ok((uuid, partitions, config)) => {
                r.topic_id = uuid;
                r.num_partitions = partitions;
                r.replication_factor = 1;
                r.configs = Some(
                    topic_config::TOPIC_KEYS
                        .iter()
                        .map(|k| {
                            let mut c = CreatableTopicConfigs::default();
                            c.name = str_bytes(k.name);
                            c.value = Some(str_bytes(config.get(k.name)));
                            // 1 = topic override, 5 = default
                            c.config_source = if config.overrides.contains_key(k.name) {
                                1
                            } else {
                                5
                            };
                            c
                        })
                        .collect(),
                );
            }
            Err(e) => {
                r.error_code = e.code.code();
                r.error_message = Some(str_bytes(e.message));
            }
        }
        resp.topics.push(r);
    }
    resp
}

async fn create(
    broker: &Broker,
    name: &str,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<(uuid::Uuid, i32, TopicConfig), KafkaError> {
    validate_topic_name(name)?;
    let partitions = if !t.assignments.is_empty() {
        t.assignments.len() as i32
    } else if t.num_partitions == -1 {
        broker.config.default_partitions
    } else {
        t.num_partitions
    };
    if partitions < 1 {
        return Err(KafkaError::new(
            ResponseError::InvalidPartitions,
            format!("number of partitions must be at least 1, got {partitions}"),
        ));
    }
    // Replication is the object store's job; any factor is accepted and the
    // topic reports this broker as its single replica.
    if t.replication_factor == 0 || t.replication_factor < -1 {
        return Err(KafkaError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor must be -1 or at least 1, got {}",
                t.replication_factor
            ),
        ));
    }
    let mut config = TopicConfig::default();
    for c in &t.configs {
        let Some(value) = &c.value else { continue };
        topic_config::validate(&c.name, value)
            .map_err(|m| KafkaError::new(ResponseError::InvalidConfig, m))?;
        config
            .overrides
            .insert(c.name.to_string(), value.to_string());
    }
    if validate_only {
        if broker.topic(name).await?.is_some() {
            return Err(KafkaError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        return Ok((uuid::Uuid::nil(), partitions, config));
    }
    let t = broker.create_topic(name, partitions, &config).await?;
    Ok((t.uuid, t.partitions, t.config.clone()))
}
