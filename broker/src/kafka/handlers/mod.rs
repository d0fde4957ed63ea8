//! One handler per Kafka API, named after it. `start` decodes the body and
//! returns the work to run; only produce does part of its work before
//! returning (queueing batches in connection order).
//!
//! May use: `kafka` (`codec`, `session`), `node` (`Broker`), `coordinator`
//! (groups), `log` (append and read), `policy` (validation, purposes,
//! quotas), `security` (ACL operations), `cluster`, `store` and `common`.
//!
//! Contract: every response is encoded for the request's version and
//! correlation id (`respond`); a handler that touches a resource asks the
//! connection's `ConnContext` first, and a topic the caller may not touch
//! fails the same whether it exists or not (`authorized_topic`).

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

use crate::kafka::codec::{CodecError, RequestFrame, encode_response};
use crate::kafka::session::ConnContext;
use crate::node::state::SharedBroker;

mod acls;
mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_client_quotas;
mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_client_quotas;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_transactions;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod scram_credentials;
mod sync_group;
mod txn_offset_commit;

pub type Pending = BoxFuture<'static, Result<Option<Bytes>, CodecError>>;

fn respond<R: Encodable + HeaderVersion>(
    req: &RequestFrame,
    r: &R,
) -> Result<Option<Bytes>, CodecError> {
    encode_response(req.correlation_id(), req.version, r).map(Some)
}

/// Wraps an async handler `f(broker, ctx, request_body, version)` (the
/// module's `handle`, or the named function) into a pending response;
/// handlers authorize the request through `ctx`.
macro_rules! checked {
    ($broker:expr, $ctx:expr, $req:expr, $module:ident, $ty:ty) => {
        checked!($broker, $ctx, $req, $module::handle, $ty)
    };
    ($broker:expr, $ctx:expr, $req:expr, $module:ident :: $f:ident, $ty:ty) => {{
        let body: $ty = $req.decode()?;
        let broker = $broker;
        let ctx = $ctx;
        let req = $req;
        async move {
            let resp = $module::$f(&broker, &ctx, body, req.version).await;
            respond(&req, &resp)
        }
        .boxed()
    }};
}

/// As `checked!`, for a group member's requests (READ on the group): a
/// refused one answers GROUP_AUTHORIZATION_FAILED.
macro_rules! group_member {
    ($broker:expr, $ctx:expr, $req:expr, $module:ident, $ty:ty, $resp:ty) => {{
        let body: $ty = $req.decode()?;
        let broker = $broker;
        let ctx = $ctx;
        let req = $req;
        async move {
            if !may_join(&broker, &ctx, &body.group_id).await {
                let mut resp = <$resp>::default();
                resp.error_code = ResponseError::GroupAuthorizationFailed.code();
                return respond(&req, &resp);
            }
            let resp = $module::handle(&broker, body, req.version).await;
            respond(&req, &resp)
        }
        .boxed()
    }};
}

async fn may_join(broker: &crate::node::state::Broker, ctx: &ConnContext, group: &str) -> bool {
    ctx.may(
        broker,
        crate::security::acl::Operation::Read,
        crate::security::acl::ResourceType::Group,
        group,
    )
    .await
}

/// As `checked!`, for handlers that need the connection: whose request it
/// is (to authorize it) or which listener it came in on (broker addresses
/// are given for that listener).
macro_rules! with_ctx {
    ($broker:expr, $ctx:expr, $req:expr, $module:ident, $ty:ty) => {{
        let body: $ty = $req.decode()?;
        let broker = $broker;
        let req = $req;
        let ctx = $ctx;
        async move {
            let resp = $module::handle(&broker, body, req.version, &ctx).await;
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
        ApiKey::Metadata => with_ctx!(broker, ctx, req, metadata, m::MetadataRequest),
        ApiKey::Fetch => fetch::start(broker, ctx, req)?,
        ApiKey::ListOffsets => checked!(broker, ctx, req, list_offsets, m::ListOffsetsRequest),
        ApiKey::CreateTopics => checked!(broker, ctx, req, create_topics, m::CreateTopicsRequest),
        ApiKey::DeleteTopics => checked!(broker, ctx, req, delete_topics, m::DeleteTopicsRequest),
        ApiKey::CreatePartitions => {
            checked!(
                broker,
                ctx,
                req,
                create_partitions,
                m::CreatePartitionsRequest
            )
        }
        ApiKey::DeleteRecords => {
            checked!(broker, ctx, req, delete_records, m::DeleteRecordsRequest)
        }
        ApiKey::InitProducerId => {
            checked!(broker, ctx, req, init_producer_id, m::InitProducerIdRequest)
        }
        ApiKey::OffsetForLeaderEpoch => checked!(
            broker,
            ctx,
            req,
            offset_for_leader_epoch,
            m::OffsetForLeaderEpochRequest
        ),
        ApiKey::DescribeConfigs => {
            checked!(
                broker,
                ctx,
                req,
                describe_configs,
                m::DescribeConfigsRequest
            )
        }
        ApiKey::IncrementalAlterConfigs => checked!(
            broker,
            ctx,
            req,
            alter_configs::handle_incremental,
            m::IncrementalAlterConfigsRequest
        ),
        ApiKey::AlterConfigs => checked!(
            broker,
            ctx,
            req,
            alter_configs::handle_legacy,
            m::AlterConfigsRequest
        ),
        ApiKey::FindCoordinator => {
            with_ctx!(
                broker,
                ctx,
                req,
                find_coordinator,
                m::FindCoordinatorRequest
            )
        }
        ApiKey::JoinGroup => join_group::start(broker, ctx, req)?,
        ApiKey::SyncGroup => group_member!(
            broker,
            ctx,
            req,
            sync_group,
            m::SyncGroupRequest,
            m::SyncGroupResponse
        ),
        ApiKey::Heartbeat => group_member!(
            broker,
            ctx,
            req,
            heartbeat,
            m::HeartbeatRequest,
            m::HeartbeatResponse
        ),
        ApiKey::LeaveGroup => group_member!(
            broker,
            ctx,
            req,
            leave_group,
            m::LeaveGroupRequest,
            m::LeaveGroupResponse
        ),
        ApiKey::OffsetCommit => checked!(broker, ctx, req, offset_commit, m::OffsetCommitRequest),
        ApiKey::OffsetFetch => checked!(broker, ctx, req, offset_fetch, m::OffsetFetchRequest),
        ApiKey::OffsetDelete => checked!(broker, ctx, req, offset_delete, m::OffsetDeleteRequest),
        ApiKey::ListGroups => checked!(broker, ctx, req, list_groups, m::ListGroupsRequest),
        ApiKey::DescribeGroups => {
            checked!(broker, ctx, req, describe_groups, m::DescribeGroupsRequest)
        }
        ApiKey::DeleteGroups => checked!(broker, ctx, req, delete_groups, m::DeleteGroupsRequest),
        ApiKey::DescribeCluster => {
            with_ctx!(
                broker,
                ctx,
                req,
                describe_cluster,
                m::DescribeClusterRequest
            )
        }
        ApiKey::DescribeLogDirs => {
            checked!(
                broker,
                ctx,
                req,
                describe_log_dirs,
                m::DescribeLogDirsRequest
            )
        }
        ApiKey::DescribeUserScramCredentials => checked!(
            broker,
            ctx,
            req,
            scram_credentials::describe,
            m::DescribeUserScramCredentialsRequest
        ),
        ApiKey::AlterUserScramCredentials => checked!(
            broker,
            ctx,
            req,
            scram_credentials::alter,
            m::AlterUserScramCredentialsRequest
        ),
        ApiKey::DescribeAcls => checked!(broker, ctx, req, acls::describe, m::DescribeAclsRequest),
        ApiKey::CreateAcls => checked!(broker, ctx, req, acls::create, m::CreateAclsRequest),
        ApiKey::DeleteAcls => checked!(broker, ctx, req, acls::delete, m::DeleteAclsRequest),
        ApiKey::ElectLeaders => checked!(broker, ctx, req, elect_leaders, m::ElectLeadersRequest),
        ApiKey::DescribeProducers => {
            checked!(
                broker,
                ctx,
                req,
                describe_producers,
                m::DescribeProducersRequest
            )
        }
        ApiKey::ListTransactions => {
            checked!(
                broker,
                ctx,
                req,
                list_transactions,
                m::ListTransactionsRequest
            )
        }
        ApiKey::DescribeTransactions => checked!(
            broker,
            ctx,
            req,
            describe_transactions,
            m::DescribeTransactionsRequest
        ),
        ApiKey::AddPartitionsToTxn => checked!(
            broker,
            ctx,
            req,
            add_partitions_to_txn,
            m::AddPartitionsToTxnRequest
        ),
        ApiKey::AddOffsetsToTxn => checked!(
            broker,
            ctx,
            req,
            add_offsets_to_txn,
            m::AddOffsetsToTxnRequest
        ),
        ApiKey::TxnOffsetCommit => checked!(
            broker,
            ctx,
            req,
            txn_offset_commit,
            m::TxnOffsetCommitRequest
        ),
        ApiKey::EndTxn => checked!(broker, ctx, req, end_txn, m::EndTxnRequest),
        ApiKey::DescribeClientQuotas => checked!(
            broker,
            ctx,
            req,
            describe_client_quotas,
            m::DescribeClientQuotasRequest
        ),
        ApiKey::AlterClientQuotas => checked!(
            broker,
            ctx,
            req,
            alter_client_quotas,
            m::AlterClientQuotasRequest
        ),
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

pub(crate) use crate::log::LEADER_EPOCH;

/// The topic `name`, if the caller may do `op` on it. A topic the caller
/// may not touch fails the same whether it exists or not.
pub(crate) async fn authorized_topic(
    broker: &crate::node::state::Broker,
    ctx: &ConnContext,
    op: crate::security::acl::Operation,
    name: &str,
) -> Result<Option<Arc<crate::store::meta::TopicRecord>>, crate::common::KafkaError> {
    if !ctx
        .may(broker, op, crate::security::acl::ResourceType::Topic, name)
        .await
    {
        return Err(crate::common::KafkaError::new(
            kafka_protocol::error::ResponseError::TopicAuthorizationFailed,
            format!("{} may not {} topic '{name}'", ctx.principal(), op.verb()),
        ));
    }
    broker.topic(name).await
}

/// PRODUCER_FENCED as a request of `version` may be told it: versions
/// before `since` (those that predate KIP-588) get INVALID_PRODUCER_EPOCH,
/// as Kafka answers them.
pub(crate) fn fenced_for(
    code: kafka_protocol::error::ResponseError,
    version: i16,
    since: i16,
) -> kafka_protocol::error::ResponseError {
    use kafka_protocol::error::ResponseError;
    if code == ResponseError::ProducerFenced && version < since {
        ResponseError::InvalidProducerEpoch
    } else {
        code
    }
}

/// The error for a refused cluster-level operation.
pub(crate) fn cluster_refused(
    ctx: &ConnContext,
    op: crate::security::acl::Operation,
) -> crate::common::KafkaError {
    crate::common::KafkaError::new(
        kafka_protocol::error::ResponseError::ClusterAuthorizationFailed,
        format!(
            "{} may not {} the cluster ({} on CLUSTER:kafka-cluster)",
            ctx.principal(),
            op.verb(),
            op.name()
        ),
    )
}
