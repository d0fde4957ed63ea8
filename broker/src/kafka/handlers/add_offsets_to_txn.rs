//! AddOffsetsToTxn: the group's offsets will be committed with the
//! producer's transaction (WRITE on the transactional id, READ on the
//! group, as Kafka checks).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let mut resp = AddOffsetsToTxnResponse::default();
    let id = req.transactional_id.as_str();
    if !ctx
        .may(broker, Operation::Write, ResourceType::TransactionalId, id)
        .await
    {
        resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return resp;
    }
    if !ctx
        .may(broker, Operation::Read, ResourceType::Group, &req.group_id)
        .await
    {
        resp.error_code = ResponseError::GroupAuthorizationFailed.code();
        return resp;
    }
    if let Err((code, message)) = broker
        .txns
        .add_group(id, req.producer_id.0, req.producer_epoch, &req.group_id)
        .await
    {
        tracing::info!(transactional_id = id, ?code, %message, "AddOffsetsToTxn refused");
        resp.error_code = super::fenced_for(code, version, 2).code();
    }
    resp
}
