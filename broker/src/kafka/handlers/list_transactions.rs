//! ListTransactions: the transactional ids the caller may describe, with
//! their producer id and state, filtered by state, producer id, age of the
//! open transaction (v1) and id pattern (v2, a regular expression). State
//! filters Kafka does not know are reported back, as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::str_bytes;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

/// Kafka's transaction states.
const STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: ListTransactionsRequest,
    _version: i16,
) -> ListTransactionsResponse {
    let mut resp = ListTransactionsResponse::default();
    resp.unknown_state_filters = req
        .state_filters
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .cloned()
        .collect();
    let pattern = match req.transactional_id_pattern.as_deref() {
        Some(p) if !p.is_empty() => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(r) => Some(r),
            Err(_) => {
                resp.error_code = ResponseError::InvalidRegularExpression.code();
                return resp;
            }
        },
        _ => None,
    };
    let all = match broker.meta.txns().await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "cannot read transaction state");
            resp.error_code = ResponseError::CoordinatorNotAvailable.code();
            return resp;
        }
    };
    let now = crate::store::meta::unix_ms();
    for rec in all {
        if !req.state_filters.is_empty()
            && !req
                .state_filters
                .iter()
                .any(|s| s.as_str() == rec.state.as_str())
        {
            continue;
        }
        if !req.producer_id_filters.is_empty()
            && !req
                .producer_id_filters
                .contains(&ProducerId(rec.producer_id))
        {
            continue;
        }
        // v1: only transactions open for longer than this many ms.
        if req.duration_filter >= 0
            && (rec.started_ms <= 0 || now - rec.started_ms < req.duration_filter)
        {
            continue;
        }
        if pattern
            .as_ref()
            .is_some_and(|p| !p.is_match(&rec.transactional_id))
        {
            continue;
        }
        if !ctx
            .may(
                broker,
                Operation::Describe,
                ResourceType::TransactionalId,
                &rec.transactional_id,
            )
            .await
        {
            continue;
        }
        let mut st = TransactionState::default();
        st.transactional_id = TransactionalId(str_bytes(rec.transactional_id));
        st.producer_id = ProducerId(rec.producer_id);
        st.transaction_state = str_bytes(rec.state.as_str());
        resp.transaction_states.push(st);
    }
    resp
}
