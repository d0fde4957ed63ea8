//! CreatePartitions: grow a topic's partition count.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{authorized_topic, str_bytes};
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let name = t.name.to_string();
        let result = async {
            let topic = authorized_topic(broker, ctx, Operation::Alter, &name)
                .await?
                .ok_or_else(|| {
                    KafkaError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )
                })?;
            if t.count <= topic.partitions {
                return Err(KafkaError::new(
                    ResponseError::InvalidPartitions,
                    format!(
                        "topic '{name}' already has {} partitions; the new count {} must be larger",
                        topic.partitions, t.count
                    ),
                ));
            }
            if !req.validate_only {
                broker.meta.add_partitions(&name, t.count).await?;
                broker.refresh(&name).await?;
                tracing::info!(topic = %name, partitions = t.count, "added partitions");
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            r.error_code = e.code.code();
            r.error_message = Some(str_bytes(e.message));
        }
        resp.results.push(r);
    }
    resp
}
