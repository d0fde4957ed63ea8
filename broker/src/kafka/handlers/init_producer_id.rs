//! InitProducerId: a fresh producer id for idempotent producers; for a
//! transactional id, its producer id with a new epoch, which fences every
//! earlier instance (see [`crate::coordinator::transactions`]).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(id) = req.transactional_id.as_deref().filter(|id| !id.is_empty()) {
        if !ctx
            .may(broker, Operation::Write, ResourceType::TransactionalId, id)
            .await
        {
            resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
            return resp;
        }
        let given = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
        match broker
            .txns
            .init_producer(id, req.transaction_timeout_ms, given)
            .await
        {
            Ok((producer_id, epoch)) => {
                resp.producer_id = ProducerId(producer_id);
                resp.producer_epoch = epoch;
            }
            Err((code, message)) => {
                tracing::info!(transactional_id = %id, ?code, %message, "InitProducerId refused");
                resp.error_code = super::fenced_for(code, version, 4).code();
            }
        }
        return resp;
    }
    // As in Kafka 3: IDEMPOTENT_WRITE on the cluster, or WRITE on any topic.
    if broker.authorizer.enabled()
        && !ctx.may_on_cluster(broker, Operation::IdempotentWrite).await
        && !broker
            .authorizer
            .writes_some_topic(&ctx.principal(), ctx.peer.ip())
            .await
    {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return resp;
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        // KIP-360: an idempotent producer bumping its epoch keeps its id.
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch.saturating_add(1);
        if resp.producer_epoch == i16::MAX {
            // Epoch exhausted: hand out a new id instead.
        } else {
            return resp;
        }
    }
    match broker.meta.allocate_producer_id().await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    resp
}
