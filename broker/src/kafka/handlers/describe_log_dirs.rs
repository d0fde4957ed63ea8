//! DescribeLogDirs: one logical "log dir" (the object store) with the
//! stored size of each partition.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::str_bytes;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: DescribeLogDirsRequest,
    _version: i16,
) -> DescribeLogDirsResponse {
    let mut resp = DescribeLogDirsResponse::default();
    if !ctx.may_on_cluster(broker, Operation::Describe).await {
        // v3+ carries the error; older versions answer no directories.
        resp.error_code = kafka_protocol::error::ResponseError::ClusterAuthorizationFailed.code();
        return resp;
    }
    let mut dir = DescribeLogDirsResult::default();
    dir.log_dir = str_bytes(broker.config.object_store_url.clone());
    dir.total_bytes = -1;
    dir.usable_bytes = -1;
    let topics = match broker.meta.list_topics().await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot list topics");
            dir.error_code = kafka_protocol::error::ResponseError::KafkaStorageError.code();
            resp.results.push(dir);
            return resp;
        }
    };
    for t in topics {
        let parts: Vec<i32> = match &req.topics {
            None => (0..t.partitions).collect(),
            Some(list) => match list.iter().find(|x| x.topic.as_str() == t.name) {
                Some(x) => x
                    .partitions
                    .iter()
                    .copied()
                    .filter(|p| *p >= 0 && *p < t.partitions)
                    .collect(),
                None => continue,
            },
        };
        let mut dt = DescribeLogDirsTopic::default();
        dt.name = TopicName(str_bytes(t.name.clone()));
        for p in parts {
            let mut dp = DescribeLogDirsPartition::default();
            dp.partition_index = p;
            dp.partition_size = broker.meta.partition_size(t.id, p).await.unwrap_or(0);
            dt.partitions.push(dp);
        }
        dir.topics.push(dt);
    }
    resp.results.push(dir);
    resp
}
