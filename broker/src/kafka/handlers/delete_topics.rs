//! DeleteTopics: by name (all versions) or topic id (v6+).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::str_bytes;
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: DeleteTopicsRequest,
    _version: i16,
) -> DeleteTopicsResponse {
    let mut resp = DeleteTopicsResponse::default();
    let mut wanted: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
        .collect();
    wanted.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id)),
    );
    for (name, id) in wanted {
        let mut r = DeletableTopicResult::default();
        r.topic_id = id;
        r.name = name.clone().map(|n| TopicName(str_bytes(n)));
        match delete(broker, ctx, name, id).await {
            Ok((name, uuid)) => {
                r.name = Some(TopicName(str_bytes(name)));
                r.topic_id = uuid;
            }
            Err(e) => {
                r.error_code = e.code.code();
                r.error_message = Some(str_bytes(e.message));
            }
        }
        resp.responses.push(r);
    }
    resp
}

async fn delete(
    broker: &Broker,
    ctx: &ConnContext,
    name: Option<String>,
    id: uuid::Uuid,
) -> Result<(String, uuid::Uuid), KafkaError> {
    let name = match name {
        Some(n) => n,
        None => match broker.topic_by_uuid(id).await? {
            Some(t) => t.name.clone(),
            None => {
                return Err(KafkaError::new(
                    ResponseError::UnknownTopicId,
                    format!("no topic has id {id}"),
                ));
            }
        },
    };
    if !ctx
        .may(broker, Operation::Delete, ResourceType::Topic, &name)
        .await
    {
        return Err(KafkaError::new(
            ResponseError::TopicAuthorizationFailed,
            format!("{} may not delete topic '{name}'", ctx.principal()),
        ));
    }
    let t = broker.delete_topic(&name).await?;
    Ok((t.name, t.uuid))
}
