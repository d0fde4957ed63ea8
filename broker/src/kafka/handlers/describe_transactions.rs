//! DescribeTransactions: state, producer, timeout, start time and
//! partitions of each transactional id the caller may describe.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::str_bytes;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut st = TransactionState::default();
        st.transactional_id = id.clone();
        st.producer_id = ProducerId(-1);
        st.producer_epoch = -1;
        st.transaction_state = str_bytes("");
        if !ctx
            .may(
                broker,
                Operation::Describe,
                ResourceType::TransactionalId,
                &id,
            )
            .await
        {
            st.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
            resp.transaction_states.push(st);
            continue;
        }
        match broker.meta.txn(&id).await {
            Ok(Some(rec)) => {
                st.transaction_state = str_bytes(rec.state.as_str());
                st.transaction_timeout_ms = rec.timeout_ms;
                st.transaction_start_time_ms = if rec.started_ms > 0 {
                    rec.started_ms
                } else {
                    -1
                };
                st.producer_id = ProducerId(rec.producer_id);
                st.producer_epoch = rec.epoch;
                let mut by_topic: Vec<(i64, Vec<i32>)> = Vec::new();
                for p in &rec.partitions {
                    match by_topic.iter_mut().find(|(t, _)| *t == p.topic_id) {
                        Some((_, ps)) => ps.push(p.partition),
                        None => by_topic.push((p.topic_id, vec![p.partition])),
                    }
                }
                for (topic_id, partitions) in by_topic {
                    let Ok(Some(name)) = broker.meta.topic_name(topic_id).await else {
                        continue;
                    };
                    // Topics the caller may not describe are left out.
                    if !ctx
                        .may(broker, Operation::Describe, ResourceType::Topic, &name)
                        .await
                    {
                        continue;
                    }
                    let mut td = TopicData::default();
                    td.topic = TopicName(str_bytes(name));
                    td.partitions = partitions;
                    st.topics.push(td);
                }
            }
            Ok(None) => st.error_code = ResponseError::TransactionalIdNotFound.code(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read transaction state");
                st.error_code = ResponseError::CoordinatorNotAvailable.code();
            }
        }
        resp.transaction_states.push(st);
    }
    resp
}
