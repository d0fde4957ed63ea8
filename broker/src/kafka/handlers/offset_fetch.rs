//! OffsetFetch: committed offsets of one group (v0-7) or several (v8+).
//! A group or partition with no commit answers offset -1 without error, as
//! Kafka does.

use std::collections::HashMap;

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use kafka_protocol::error::ResponseError;

use super::str_bytes;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::store::meta::CommittedOffset;

/// One topic's answer: its partitions' committed offsets, or `None` when
/// the caller may not describe the topic.
type Found = (String, Option<Partitions>);

/// Partitions with their committed offset, if any.
type Partitions = Vec<(i32, Option<CommittedOffset>)>;

/// (topic, partitions or None for all) → committed offsets found.
async fn lookup(
    broker: &Broker,
    ctx: &ConnContext,
    group: &str,
    wanted: Wanted,
    require_stable: bool,
) -> Result<(Vec<Found>, Unstable), i16> {
    if !ctx
        .may(broker, Operation::Describe, ResourceType::Group, group)
        .await
    {
        return Err(ResponseError::GroupAuthorizationFailed.code());
    }
    let stored = broker.meta.fetch_offsets(group).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read committed offsets");
        ResponseError::CoordinatorNotAvailable.code()
    })?;
    // KIP-447: a consumer that asks for stable offsets waits (retrying
    // on UNSTABLE_OFFSET_COMMIT) while a transaction holds offsets of the
    // partition that it has not committed yet.
    let unstable: Unstable = if require_stable {
        broker
            .meta
            .pending_txn_offsets(group)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read transactional offsets");
                ResponseError::CoordinatorNotAvailable.code()
            })?
            .into_iter()
            .collect()
    } else {
        Unstable::new()
    };
    let mut by_topic: HashMap<String, Vec<CommittedOffset>> = HashMap::new();
    for o in stored {
        by_topic.entry(o.topic.clone()).or_default().push(o);
    }
    let found: Vec<(String, Partitions)> = match wanted {
        None => {
            let mut all: Vec<_> = by_topic
                .into_iter()
                .map(|(t, offs)| {
                    (
                        t,
                        offs.into_iter().map(|o| (o.partition, Some(o))).collect(),
                    )
                })
                .collect();
            all.sort_by(|a: &(String, Vec<_>), b| a.0.cmp(&b.0));
            all
        }
        Some(list) => list
            .into_iter()
            .map(|(t, parts)| {
                let offs = by_topic.get(&t);
                let found = parts
                    .into_iter()
                    .map(|p| {
                        (
                            p,
                            offs.and_then(|o| o.iter().find(|x| x.partition == p).cloned()),
                        )
                    })
                    .collect();
                (t, found)
            })
            .collect(),
    };
    let mut out = Vec::with_capacity(found.len());
    for (topic, parts) in found {
        let visible = ctx
            .shows(broker, Operation::Describe, ResourceType::Topic, &topic)
            .await;
        out.push((topic, visible.then_some(parts)));
    }
    Ok((out, unstable))
}

/// Partitions whose offsets wait in an open transaction.
type Unstable = std::collections::HashSet<(String, i32)>;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut resp = OffsetFetchResponse::default();
        for g in req.groups {
            resp.groups
                .push(fetch_group(broker, ctx, g, req.require_stable).await);
        }
        return resp;
    }
    fetch_one_group(broker, ctx, req, version).await
}

/// The names and partitions a request asks for (`None`: every committed one).
fn wanted<T>(topics: Option<&Vec<T>>, of: impl Fn(&T) -> (String, Vec<i32>)) -> Wanted {
    topics.map(|ts| ts.iter().map(of).collect())
}

type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// One group of a v8+ request.
async fn fetch_group(
    broker: &Broker,
    ctx: &ConnContext,
    g: OffsetFetchRequestGroup,
    require_stable: bool,
) -> OffsetFetchResponseGroup {
    let mut gr = OffsetFetchResponseGroup::default();
    gr.group_id = g.group_id.clone();
    let asked = wanted(g.topics.as_ref(), |t| {
        (t.name.to_string(), t.partition_indexes.clone())
    });
    let (found, unstable) = match lookup(broker, ctx, &g.group_id, asked, require_stable).await {
        Err(code) => {
            gr.error_code = code;
            return gr;
        }
        Ok(found) => found,
    };
    for (topic, parts) in found {
        let mut tr = OffsetFetchResponseTopics::default();
        tr.name = TopicName(str_bytes(topic));
        let Some(parts) = parts else {
            // Asked for by name, refused; listed all: left out.
            if let Some(t) = g
                .topics
                .as_ref()
                .and_then(|ts| ts.iter().find(|t| t.name == tr.name))
            {
                for p in &t.partition_indexes {
                    let mut pr = OffsetFetchResponsePartitions::default();
                    pr.partition_index = *p;
                    pr.committed_offset = -1;
                    pr.error_code = ResponseError::TopicAuthorizationFailed.code();
                    tr.partitions.push(pr);
                }
                gr.topics.push(tr);
            }
            continue;
        };
        for (p, o) in parts {
            let mut pr = OffsetFetchResponsePartitions::default();
            pr.partition_index = p;
            pr.committed_offset = o.as_ref().map_or(-1, |o| o.offset);
            pr.committed_leader_epoch = o.as_ref().map_or(-1, |o| o.leader_epoch);
            pr.metadata = Some(str_bytes(o.and_then(|o| o.metadata).unwrap_or_default()));
            if unstable.contains(&(tr.name.to_string(), p)) {
                pr.committed_offset = -1;
                pr.error_code = ResponseError::UnstableOffsetCommit.code();
            }
            tr.partitions.push(pr);
        }
        gr.topics.push(tr);
    }
    gr
}

/// A v0–7 request: one group.
async fn fetch_one_group(
    broker: &Broker,
    ctx: &ConnContext,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    let asked = wanted(req.topics.as_ref(), |t| {
        (t.name.to_string(), t.partition_indexes.clone())
    });
    let stable = version >= 7 && req.require_stable;
    let (found, unstable) = match lookup(broker, ctx, &req.group_id, asked, stable).await {
        Err(code) => {
            if version >= 2 {
                resp.error_code = code;
            }
            return resp;
        }
        Ok(found) => found,
    };
    for (topic, parts) in found {
        let mut tr = OffsetFetchResponseTopic::default();
        tr.name = TopicName(str_bytes(topic));
        let Some(parts) = parts else {
            if let Some(ts) = &req.topics
                && let Some(t) = ts.iter().find(|t| t.name == tr.name)
            {
                for p in &t.partition_indexes {
                    let mut pr = OffsetFetchResponsePartition::default();
                    pr.partition_index = *p;
                    pr.committed_offset = -1;
                    pr.error_code = ResponseError::TopicAuthorizationFailed.code();
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
            continue;
        };
        for (p, o) in parts {
            let mut pr = OffsetFetchResponsePartition::default();
            pr.partition_index = p;
            pr.committed_offset = o.as_ref().map_or(-1, |o| o.offset);
            if version >= 5 {
                pr.committed_leader_epoch = o.as_ref().map_or(-1, |o| o.leader_epoch);
            }
            pr.metadata = Some(str_bytes(o.and_then(|o| o.metadata).unwrap_or_default()));
            if unstable.contains(&(tr.name.to_string(), p)) {
                pr.committed_offset = -1;
                pr.error_code = ResponseError::UnstableOffsetCommit.code();
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
