//! DescribeConfigs for topics (resource type 2) and brokers (type 4).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{authorized_topic, str_bytes};
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;
use crate::store::topic_config;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

// Config sources (DescribeConfigs v1+).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Broker settings reported to tools, as (name, value, type, doc).
pub fn broker_configs(broker: &Broker) -> Vec<(&'static str, String, i8, &'static str)> {
    let c = &broker.config;
    vec![
        ("broker.id", c.broker_id.to_string(), 3, "This broker's id."),
        (
            "advertised.listeners",
            c.security
                .listeners
                .iter()
                .map(|l| {
                    format!(
                        "{}://{}:{}",
                        l.protocol.name(),
                        l.advertised_host,
                        l.advertised_port
                    )
                })
                .collect::<Vec<_>>()
                .join(","),
            2,
            "Address given to clients.",
        ),
        (
            "listeners",
            c.security
                .listeners
                .iter()
                .map(|l| format!("{}://{}", l.protocol.name(), l.addr))
                .collect::<Vec<_>>()
                .join(","),
            2,
            "Kafka listener address.",
        ),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            1,
            "Create topics on first use.",
        ),
        (
            "num.partitions",
            c.default_partitions.to_string(),
            3,
            "Partitions of auto-created topics.",
        ),
        (
            "default.replication.factor",
            "1".into(),
            3,
            "Reported replication factor; data durability comes from the object store.",
        ),
        (
            "min.insync.replicas",
            "1".into(),
            3,
            "Accepted for compatibility.",
        ),
        (
            "message.max.bytes",
            "1048588".into(),
            3,
            "Default max.message.bytes of topics.",
        ),
        (
            "log.retention.ms",
            "604800000".into(),
            5,
            "Default retention.ms of topics.",
        ),
        (
            "log.retention.bytes",
            "-1".into(),
            5,
            "Default retention.bytes of topics.",
        ),
        (
            "socket.request.max.bytes",
            c.max_request_bytes.to_string(),
            3,
            "Largest request accepted.",
        ),
        (
            "log.dirs",
            c.data_dir.display().to_string(),
            2,
            "Embedded data directory.",
        ),
    ]
}

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let wanted = |name: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        match res.resource_type {
            RESOURCE_TOPIC => {
                match authorized_topic(broker, ctx, Operation::DescribeConfigs, &res.resource_name)
                    .await
                {
                    Ok(Some(topic)) => {
                        for k in topic_config::TOPIC_KEYS.iter().filter(|k| wanted(k.name)) {
                            let overridden = topic.config.overrides.contains_key(k.name);
                            let mut e =
                                entry(k.name, topic.config.get(k.name), k.kind, k.doc, version);
                            e.config_source = if overridden {
                                SOURCE_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            };
                            if req.include_synonyms {
                                if overridden {
                                    e.synonyms.push(synonym(
                                        k.name,
                                        topic.config.get(k.name),
                                        SOURCE_TOPIC,
                                    ));
                                }
                                e.synonyms.push(synonym(k.name, k.default, SOURCE_DEFAULT));
                            }
                            r.configs.push(e);
                        }
                    }
                    Ok(None) => {
                        r.error_code = ResponseError::UnknownTopicOrPartition.code();
                        r.error_message = Some(str_bytes(format!(
                            "topic '{}' does not exist",
                            res.resource_name
                        )));
                    }
                    Err(e) => {
                        r.error_code = e.code.code();
                        r.error_message = Some(str_bytes(e.message));
                    }
                }
            }
            RESOURCE_BROKER => {
                let name = res.resource_name.as_str();
                if !ctx.may_on_cluster(broker, Operation::DescribeConfigs).await {
                    let e = super::cluster_refused(ctx, Operation::DescribeConfigs);
                    r.error_code = e.code.code();
                    r.error_message = Some(str_bytes(e.message));
                } else if !name.is_empty() && name != broker.config.broker_id.to_string() {
                    r.error_code = ResponseError::InvalidRequest.code();
                    r.error_message = Some(str_bytes(format!("unknown broker '{name}'")));
                } else {
                    for (k, v, kind, doc) in
                        broker_configs(broker).into_iter().filter(|c| wanted(c.0))
                    {
                        let mut e = entry(k, &v, kind, doc, version);
                        e.read_only = true;
                        e.config_source = SOURCE_STATIC_BROKER;
                        if req.include_synonyms {
                            e.synonyms.push(synonym(k, &v, SOURCE_STATIC_BROKER));
                        }
                        r.configs.push(e);
                    }
                }
            }
            other => {
                r.error_code = ResponseError::InvalidRequest.code();
                r.error_message = Some(str_bytes(format!(
                    "config resource type {other} is not supported"
                )));
            }
        }
        resp.results.push(r);
    }
    resp
}

fn entry(
    name: &str,
    value: &str,
    kind: i8,
    doc: &str,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(name);
    e.value = Some(str_bytes(value));
    if version >= 3 {
        e.config_type = kind;
        if !doc.is_empty() {
            e.documentation = Some(str_bytes(doc));
        }
    }
    e
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    let mut s = DescribeConfigsSynonym::default();
    s.name = str_bytes(name);
    s.value = Some(str_bytes(value));
    s.source = source;
    s
}
