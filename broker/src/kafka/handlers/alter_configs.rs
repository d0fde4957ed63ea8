//! IncrementalAlterConfigs and the older AlterConfigs, for topic configs.
//! Broker settings come from flags, environment and the config file, so
//! altering them over the protocol is refused with a clear message.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{authorized_topic, str_bytes};
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;
use crate::store::topic_config::{self, TopicConfig};

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Applies `change` to a topic's overrides and stores them (unless validating).
async fn alter_topic(
    broker: &Broker,
    ctx: &ConnContext,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), KafkaError>,
) -> Result<(), KafkaError> {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                "broker settings are static in Sluice: change the flag, SLUICE_* variable or config file and restart",
            ));
        }
        other => {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                format!("config resource type {other} is not supported"),
            ));
        }
    }
    let topic = authorized_topic(broker, ctx, Operation::AlterConfigs, name)
        .await?
        .ok_or_else(|| {
            KafkaError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
    let mut overrides = topic.config.overrides.clone();
    change(&mut overrides)?;
    // Only what changes is checked: an override stored by an older
    // version stays until someone changes it.
    for (k, v) in &overrides {
        if topic.config.overrides.get(k) != Some(v) {
            topic_config::validate(k, v)
                .map_err(|m| KafkaError::new(ResponseError::InvalidConfig, m))?;
        }
    }
    if !validate_only {
        broker
            .meta
            .set_topic_config(name, &TopicConfig { overrides })
            .await?;
        broker.refresh(name).await?;
        tracing::info!(topic = name, "altered topic config");
    }
    Ok(())
}

fn fail(r_code: &mut i16, r_msg: &mut Option<kafka_protocol::protocol::StrBytes>, e: KafkaError) {
    *r_code = e.code.code();
    *r_msg = Some(str_bytes(e.message));
}

pub async fn handle_incremental(
    broker: &Broker,
    ctx: &ConnContext,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let result = alter_topic(
            broker,
            ctx,
            res.resource_type,
            &res.resource_name,
            req.validate_only,
            |o| {
                for c in &res.configs {
                    let name = c.name.to_string();
                    let Some(key) = topic_config::key(&name) else {
                        return Err(KafkaError::new(
                            ResponseError::InvalidConfig,
                            format!("unknown topic config '{name}'"),
                        ));
                    };
                    let value = c.value.as_ref().map(|v| v.to_string());
                    match c.config_operation {
                        OP_SET => {
                            o.insert(name, value.unwrap_or_default());
                        }
                        OP_DELETE => {
                            o.remove(&name);
                        }
                        OP_APPEND | OP_SUBTRACT if key.kind == topic_config::KIND_LIST => {
                            let current = o.get(&name).map_or(key.default, String::as_str);
                            let mut items: Vec<String> = topic_config::list_items(current)
                                .map(str::to_owned)
                                .collect();
                            let given = value.unwrap_or_default();
                            for item in topic_config::list_items(&given) {
                                let present = items.iter().any(|i| i == item);
                                if c.config_operation == OP_APPEND && !present {
                                    items.push(item.to_owned());
                                } else if c.config_operation == OP_SUBTRACT {
                                    items.retain(|i| i != item);
                                }
                            }
                            o.insert(name, items.join(","));
                        }
                        OP_APPEND | OP_SUBTRACT => {
                            return Err(KafkaError::new(
                                ResponseError::InvalidConfig,
                                format!("{name} is not a list config; use SET or DELETE"),
                            ));
                        }
                        other => {
                            return Err(KafkaError::new(
                                ResponseError::InvalidRequest,
                                format!("unknown config operation {other}"),
                            ));
                        }
                    }
                }
                Ok(())
            },
        )
        .await;
        if let Err(e) = result {
            fail(&mut r.error_code, &mut r.error_message, e);
        }
        resp.responses.push(r);
    }
    resp
}

pub async fn handle_legacy(
    broker: &Broker,
    ctx: &ConnContext,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        // AlterConfigs replaces the whole set of overrides.
        let result = alter_topic(
            broker,
            ctx,
            res.resource_type,
            &res.resource_name,
            req.validate_only,
            |o| {
                o.clear();
                for c in &res.configs {
                    if let Some(v) = &c.value {
                        o.insert(c.name.to_string(), v.to_string());
                    }
                }
                Ok(())
            },
        )
        .await;
        if let Err(e) = result {
            fail(&mut r.error_code, &mut r.error_message, e);
        }
        resp.responses.push(r);
    }
    resp
}
