//! Table maintenance for topics: compaction of small files, removal of
//! files that retention emptied, snapshot expiry. Run by the archiver on a
//! schedule and on demand (`sluice table compact|expire`, over HTTP).

use std::collections::HashMap;
use std::time::Duration;

use sluice_lakehouse::maintenance::MaintenanceReport;
use sluice_lakehouse::{Lakehouse, TopicTable};

use crate::node::state::Broker;
use crate::store::meta::TopicRecord;

/// Size compaction aims for; files under half of it are candidates.
pub const TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;
/// Attempts when a commit races the archiver's appends.
const ATTEMPTS: usize = 5;

/// What one maintenance run did, for logs and the HTTP answer.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Outcome {
    pub topic: String,
    pub files_before: usize,
    pub files_removed: usize,
    pub files_added: usize,
    pub rows_rewritten: u64,
    pub files_dropped_by_retention: usize,
    pub snapshots_before: usize,
    pub snapshots_after: usize,
}

async fn log_starts(broker: &Broker, topic: &TopicRecord) -> anyhow::Result<HashMap<i32, i64>> {
    let mut out = HashMap::new();
    for p in 0..topic.partitions {
        if let Some(o) = broker.meta.partition_offsets(topic.id, p).await? {
            out.insert(p, o.log_start);
        }
    }
    Ok(out)
}

/// Runs `step` on a freshly loaded table, again when a concurrent commit
/// got in first.
async fn with_retries<F, Fut, E>(
    lake: &Lakehouse,
    topic: &str,
    mut step: F,
) -> anyhow::Result<Option<(TopicTable, MaintenanceReport)>>
where
    F: FnMut(TopicTable) -> Fut,
    Fut: std::future::Future<Output = Result<(TopicTable, MaintenanceReport), E>>,
    E: std::fmt::Display,
{
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        let Some(table) = lake.load(topic).await? else {
            return Ok(None);
        };
        match step(table).await {
            Ok(done) => return Ok(Some(done)),
            Err(e) => {
                tracing::debug!(topic, attempt, error = %e, "maintenance commit failed; retrying");
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(50 * (attempt as u64 + 1))).await;
            }
        }
    }
    Err(anyhow::anyhow!(
        "maintenance of {topic} kept failing: {}",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Compacts the topic's table and removes files that retention emptied.
pub async fn compact(
    broker: &Broker,
    lake: &Lakehouse,
    topic: &TopicRecord,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome {
        topic: topic.name.clone(),
        ..Default::default()
    };
    let starts = log_starts(broker, topic).await?;
    if let Some((_, r)) = with_retries(lake, &topic.name, |t| {
        let starts = starts.clone();
        async move { lake.drop_expired_files(&t, &starts).await }
    })
    .await?
    {
        outcome.files_dropped_by_retention = r.files_removed;
    }
    if let Some((_, r)) = with_retries(lake, &topic.name, |t| async move {
        lake.compact(&t, TARGET_FILE_BYTES).await
    })
    .await?
    {
        outcome.files_before = r.files_before;
        outcome.files_removed = r.files_removed;
        outcome.files_added = r.files_added;
        outcome.rows_rewritten = r.rows_rewritten;
    }
    if outcome.files_removed > 0 || outcome.files_dropped_by_retention > 0 {
        tracing::info!(
            topic = %topic.name,
            removed = outcome.files_removed,
            added = outcome.files_added,
            retention = outcome.files_dropped_by_retention,
            "table compacted"
        );
    }
    Ok(outcome)
}

/// Expires the topic table's snapshots older than `max_age` (keeping at
/// least `keep`), and deletes the files nothing refers to any more.
pub async fn expire(
    lake: &Lakehouse,
    topic: &TopicRecord,
    max_age: Duration,
    keep: usize,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome {
        topic: topic.name.clone(),
        ..Default::default()
    };
    let Some(table) = lake.load(&topic.name).await? else {
        return Ok(outcome);
    };
    outcome.snapshots_before = table.table.metadata().snapshots().len();
    let cutoff = crate::store::meta::unix_ms() - max_age.as_millis() as i64;
    let table = lake.expire_snapshots(&table, cutoff, keep.max(1)).await?;
    outcome.snapshots_after = table.table.metadata().snapshots().len();
    Ok(outcome)
}
