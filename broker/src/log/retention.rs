//! Background retention: delete batches past `retention.ms` / `retention.bytes`
//! and remove segment objects that no batch references any more.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::store::meta::{MetaStore, unix_ms};
use crate::store::objects::Segments;

/// An unreferenced segment younger than this may still be awaiting the
/// metadata commit that references it, so it is left alone.
const ORPHAN_GRACE: Duration = Duration::from_secs(600);

/// Every `every`, on the one broker holding the upkeep lease, deletes what
/// retention allows and the segments nothing references.
pub async fn run(
    meta: MetaStore,
    segments: Segments,
    cluster: Arc<Cluster>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        // One broker at a time does the cluster's retention.
        if !cluster
            .should_run(crate::cluster::UPKEEP_LEASE, "retention")
            .await
        {
            continue;
        }
        if let Err(e) = run_once(&meta, &segments).await {
            tracing::warn!(error = %e, "retention pass failed; will retry");
        }
    }
}

/// Keeps the metadata store's write-ahead log short.
pub async fn checkpoints(meta: MetaStore, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = meta.checkpoint().await {
            tracing::warn!(error = %e, "metadata checkpoint failed; will retry");
        }
    }
}

pub async fn run_once(meta: &MetaStore, segments: &Segments) -> anyhow::Result<()> {
    let now = unix_ms();
    for (topic, partition) in meta.all_partitions().await? {
        let cutoff = topic.config.retention_ms().map(|ms| now - ms);
        let max_bytes = topic.config.retention_bytes();
        if cutoff.is_none() && max_bytes.is_none() {
            continue;
        }
        if let Some(point) = meta
            .retention_point(topic.id, partition, cutoff, max_bytes)
            .await?
        {
            let start = meta.advance_log_start(topic.id, partition, point).await?;
            tracing::debug!(topic = %topic.name, partition, log_start = start, "retention applied");
        }
    }
    let grace = ORPHAN_GRACE.as_millis() as i64;
    // Segments whose batches were all deleted (segments are referenced
    // from the moment their commit succeeds, so no grace is needed).
    for key in meta.collect_unreferenced_segments(now).await? {
        segments.delete(&key).await?;
    }
    // Objects whose commit never happened (crash between write and commit).
    for (key, modified) in segments.list().await? {
        if modified < now - grace && !meta.segment_exists(&key).await? {
            tracing::info!(segment = %key, "removing segment left by an interrupted append");
            segments.delete(&key).await?;
        }
    }
    Ok(())
}
