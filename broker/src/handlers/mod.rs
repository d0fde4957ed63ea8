//! One handler per Kafka API, named after it. `start` decodes the body and
//! returns the work to run; only produce does part of its work before
//! returning (queueing batches in connection order).

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

use crate::codec::{CodecError, RequestFrame, encode_response};
use crate::connection::ConnContext;
use crate::state::SharedBroker;

mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;

pub type Pending = BoxFuture<'static, Result<Option<Bytes>, CodecError>>;

fn respond<R: Encodable + HeaderVersion>(
    req: &RequestFrame,
    r: &R,
) -> Result<Option<Bytes>, CodecError> {
    encode_response(req.correlation_id(), req.version, r).map(Some)
}

/// Wraps an async handler `f(broker, request_body, version)` into a pending response.
macro_rules! simple {
    ($broker:expr, $req:expr, $module:ident, $ty:ty) => {{
        let body: $ty = $req.decode()?;
        let broker = $broker;
        let req = $req;
        async move {
            let resp = $module::handle(&broker, body, req.version).await;
            respond(&req, &resp)
        }
        .boxed()
    }};
}

/// As `simple!`, for handlers that answer with broker addresses: they give
/// the addresses of the listener the request came in on.
macro_rules! addressed {
    ($broker:expr, $ctx:expr, $req:expr, $module:ident, $ty:ty) => {{
        let body: $ty = $req.decode()?;
        let broker = $broker;
        let req = $req;
        let listener = $ctx.listener;
        async move {
            let resp = $module::handle(&broker, body, req.version, listener).await;
            respond(&req, &resp)
        }
        .boxed()
    }};
}

pub async fn start(
    broker: SharedBroker,
    ctx: Arc<ConnContext>,
    req: RequestFrame,
) -> Result<Pending, CodecError> {
    use kafka_protocol::messages as m;
    Ok(match req.api_key {
        ApiKey::Produce => {
            let body: m::ProduceRequest = req.decode()?;
            produce::start(broker, &ctx, req, body)
        }
        ApiKey::ApiVersions => {
            let body: m::ApiVersionsRequest = req.decode()?;
            let resp = api_versions::handle(body, req.version);
            let out = respond(&req, &resp);
            async move { out }.boxed()
        }
        ApiKey::Metadata => addressed!(broker, ctx, req, metadata, m::MetadataRequest),
        ApiKey::Fetch => {
            let body: m::FetchRequest = req.decode()?;
            async move {
                let client_id = req.header.client_id.as_deref().unwrap_or("");
                let resp = fetch::handle(&broker, body, &ctx, client_id).await;
                respond(&req, &resp)
            }
            .boxed()
        }
        ApiKey::ListOffsets => simple!(broker, req, list_offsets, m::ListOffsetsRequest),
        ApiKey::CreateTopics => simple!(broker, req, create_topics, m::CreateTopicsRequest),
        ApiKey::DeleteTopics => simple!(broker, req, delete_topics, m::DeleteTopicsRequest),
        ApiKey::CreatePartitions => {
            simple!(broker, req, create_partitions, m::CreatePartitionsRequest)
        }
        ApiKey::DeleteRecords => simple!(broker, req, delete_records, m::DeleteRecordsRequest),
        ApiKey::InitProducerId => {
            simple!(broker, req, init_producer_id, m::InitProducerIdRequest)
        }
        ApiKey::OffsetForLeaderEpoch => simple!(
            broker,
            req,
            offset_for_leader_epoch,
            m::OffsetForLeaderEpochRequest
        ),
        ApiKey::DescribeConfigs => {
            simple!(broker, req, describe_configs, m::DescribeConfigsRequest)
        }
        ApiKey::IncrementalAlterConfigs => {
            let body: m::IncrementalAlterConfigsRequest = req.decode()?;
            async move {
                let resp = alter_configs::handle_incremental(&broker, body).await;
                respond(&req, &resp)
            }
            .boxed()
        }
        ApiKey::AlterConfigs => {
            let body: m::AlterConfigsRequest = req.decode()?;
            async move {
                let resp = alter_configs::handle_legacy(&broker, body).await;
                respond(&req, &resp)
            }
            .boxed()
        }
        ApiKey::FindCoordinator => {
            addressed!(
                broker,
                ctx,
                req,
                find_coordinator,
                m::FindCoordinatorRequest
            )
        }
        ApiKey::JoinGroup => {
            let body: m::JoinGroupRequest = req.decode()?;
            let client_id = req.header.client_id.as_deref().unwrap_or("").to_string();
            // Kafka reports client hosts as "/ADDRESS".
            let host = format!("/{}", ctx.peer.ip());
            async move {
                let resp = join_group::handle(&broker, body, req.version, client_id, host).await;
                respond(&req, &resp)
            }
            .boxed()
        }
        ApiKey::SyncGroup => simple!(broker, req, sync_group, m::SyncGroupRequest),
        ApiKey::Heartbeat => simple!(broker, req, heartbeat, m::HeartbeatRequest),
        ApiKey::LeaveGroup => simple!(broker, req, leave_group, m::LeaveGroupRequest),
        ApiKey::OffsetCommit => simple!(broker, req, offset_commit, m::OffsetCommitRequest),
        ApiKey::OffsetFetch => simple!(broker, req, offset_fetch, m::OffsetFetchRequest),
        ApiKey::OffsetDelete => simple!(broker, req, offset_delete, m::OffsetDeleteRequest),
        ApiKey::ListGroups => simple!(broker, req, list_groups, m::ListGroupsRequest),
        ApiKey::DescribeGroups => simple!(broker, req, describe_groups, m::DescribeGroupsRequest),
        ApiKey::DeleteGroups => simple!(broker, req, delete_groups, m::DeleteGroupsRequest),
        ApiKey::DescribeCluster => {
            addressed!(
                broker,
                ctx,
                req,
                describe_cluster,
                m::DescribeClusterRequest
            )
        }
        ApiKey::DescribeLogDirs => {
            simple!(broker, req, describe_log_dirs, m::DescribeLogDirsRequest)
        }
        other => {
            return Err(CodecError::UnsupportedVersion {
                api: other,
                version: req.version,
                min: 0,
                max: -1,
            });
        }
    })
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Leader epoch reported for every partition. Sluice has no replicas to
/// elect, so the epoch never changes.
pub(crate) const LEADER_EPOCH: i32 = 0;
