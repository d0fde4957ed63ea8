//! EndTxn: commit or abort the producer's open transaction (WRITE on the
//! transactional id). Answered once every marker is stored and the
//! transaction's offsets are committed or dropped.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    let mut resp = EndTxnResponse::default();
    let id = req.transactional_id.as_str();
    if !ctx
        .may(broker, Operation::Write, ResourceType::TransactionalId, id)
        .await
    {
        resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return resp;
    }
    if let Err((code, message)) = broker
        .txns
        .end_txn(id, req.producer_id.0, req.producer_epoch, req.committed)
        .await
    {
        tracing::info!(transactional_id = id, ?code, %message, "EndTxn refused");
        resp.error_code = super::fenced_for(code, version, 2).code();
    }
    resp
}
