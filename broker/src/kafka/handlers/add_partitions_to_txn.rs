//! AddPartitionsToTxn: partitions join the producer's open transaction.
//! v0–3 carry one transaction (the producer's); v4+ may batch many, as
//! brokers send them (answered here the same way, per transaction).
//!
//! Kafka's checks: WRITE on the transactional id, WRITE on each topic
//! (a refused topic fails with TOPIC_AUTHORIZATION_FAILED and the others
//! with OPERATION_NOT_ATTEMPTED), every partition exists.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TransactionalId,
};

use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let mut resp = AddPartitionsToTxnResponse::default();
    if version <= 3 {
        let results = add(
            broker,
            ctx,
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            version,
        )
        .await;
        resp.results_by_topic_v3_and_below = results;
        return resp;
    }
    for t in &req.transactions {
        let mut r = AddPartitionsToTxnResult::default();
        r.transactional_id = t.transactional_id.clone();
        r.topic_results = if t.verify_only {
            verify(broker, t).await
        } else {
            add(
                broker,
                ctx,
                &t.transactional_id,
                t.producer_id,
                t.producer_epoch,
                &t.topics,
                version,
            )
            .await
        };
        resp.results_by_transaction.push(r);
    }
    resp
}

/// Every partition of `topics` answered with `code`.
fn all(
    topics: &[AddPartitionsToTxnTopic],
    code: impl Fn(&str) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            let mut tr = AddPartitionsToTxnTopicResult::default();
            tr.name = t.name.clone();
            let c = code(t.name.as_str());
            tr.results_by_partition = t
                .partitions
                .iter()
                .map(|&p| {
                    let mut pr = AddPartitionsToTxnPartitionResult::default();
                    pr.partition_index = p;
                    pr.partition_error_code = c;
                    pr
                })
                .collect();
            tr
        })
        .collect()
}

async fn add(
    broker: &Broker,
    ctx: &ConnContext,
    id: &TransactionalId,
    producer_id: ProducerId,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    if !ctx
        .may(broker, Operation::Write, ResourceType::TransactionalId, id)
        .await
    {
        return all(topics, |_| {
            ResponseError::TransactionalIdAuthorizationFailed.code()
        });
    }
    // Topic checks first: one refused topic fails the whole request.
    let mut refused = Vec::new();
    let mut unknown = Vec::new();
    let mut partitions = Vec::new();
    for t in topics {
        if !ctx
            .may(broker, Operation::Write, ResourceType::Topic, &t.name)
            .await
        {
            refused.push(t.name.to_string());
            continue;
        }
        match broker.topic(&t.name).await {
            Ok(Some(topic)) => {
                for &p in &t.partitions {
                    if p < 0 || p >= topic.partitions {
                        unknown.push(t.name.to_string());
                    } else {
                        partitions.push((topic.id, p));
                    }
                }
            }
            _ => unknown.push(t.name.to_string()),
        }
    }
    if !refused.is_empty() || !unknown.is_empty() {
        return all(topics, |name| {
            if refused.iter().any(|r| r == name) {
                ResponseError::TopicAuthorizationFailed.code()
            } else if unknown.iter().any(|u| u == name) {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        });
    }
    match broker
        .txns
        .add_partitions(id, producer_id.0, epoch, &partitions)
        .await
    {
        Ok(()) => all(topics, |_| 0),
        Err((code, message)) => {
            tracing::info!(transactional_id = %id.as_str(), ?code, %message, "AddPartitionsToTxn refused");
            let code = super::fenced_for(code, version, 2);
            all(topics, |_| code.code())
        }
    }
}

/// v4+ `verify_only`: whether each partition is in the producer's open
/// transaction, without adding it.
async fn verify(
    broker: &Broker,
    t: &kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let rec = broker.meta.txn(&t.transactional_id).await.ok().flatten();
    let mut out = Vec::new();
    for topic in &t.topics {
        let id = broker.topic(&topic.name).await.ok().flatten().map(|x| x.id);
        let mut tr = AddPartitionsToTxnTopicResult::default();
        tr.name = topic.name.clone();
        for &p in &topic.partitions {
            let mut pr = AddPartitionsToTxnPartitionResult::default();
            pr.partition_index = p;
            let inside = rec.as_ref().is_some_and(|r| {
                r.producer_id == t.producer_id.0
                    && r.epoch == t.producer_epoch
                    && r.partitions
                        .iter()
                        .any(|x| Some(x.topic_id) == id && x.partition == p)
            });
            if !inside {
                pr.partition_error_code = ResponseError::InvalidTxnState.code();
            }
            tr.results_by_partition.push(pr);
        }
        out.push(tr);
    }
    out
}
