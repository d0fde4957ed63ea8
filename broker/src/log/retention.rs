//! Background retention: delete batches past `retention.ms` / `retention.bytes`
//! and remove segment objects that no batch references any more.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::node::state::SharedBroker;
use crate::store::meta::unix_ms;

/// An unreferenced segment younger than this may still be awaiting the
/// metadata commit that references it, so it is left alone.
const ORPHAN_GRACE: Duration = Duration::from_secs(600);

pub async fn run(broker: SharedBroker, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(broker.config.retention_check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        // One broker at a time does the cluster's retention.
        if !broker
            .cluster
            .should_run(crate::cluster::UPKEEP_LEASE, "retention")
            .await
        {
            continue;
        }
        if let Err(e) = run_once(&broker).await {
            tracing::warn!(error = %e, "retention pass failed; will retry");
        }
    }
}

/// Keeps the metadata store's write-ahead log short.
pub async fn checkpoints(broker: SharedBroker, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = broker.meta.checkpoint().await {
            tracing::warn!(error = %e, "metadata checkpoint failed; will retry");
        }
    }
}

pub async fn run_once(broker: &SharedBroker) -> anyhow::Result<()> {
    let now = unix_ms();
    for (topic, partition) in broker.meta.all_partitions().await? {
        let cutoff = topic.config.retention_ms().map(|ms| now - ms);
        let max_bytes = topic.config.retention_bytes();
        if cutoff.is_none() && max_bytes.is_none() {
            continue;
        }
        if let Some(point) = broker
            .meta
            .retention_point(topic.id, partition, cutoff, max_bytes)
            .await?
        {
            let start = broker
                .meta
                .advance_log_start(topic.id, partition, point)
                .await?;
            tracing::debug!(topic = %topic.name, partition, log_start = start, "retention applied");
        }
    }
    let grace = ORPHAN_GRACE.as_millis() as i64;
    // Segments whose batches were all deleted (segments are referenced
    // from the moment their commit succeeds, so no grace is needed).
    for key in broker.meta.collect_unreferenced_segments(now).await? {
        broker.segments.delete(&key).await?;
    }
    // Objects whose commit never happened (crash between write and commit).
    for (key, modified) in broker.segments.list().await? {
        if modified < now - grace && !broker.meta.segment_exists(&key).await? {
            tracing::info!(segment = %key, "removing segment left by an interrupted append");
            broker.segments.delete(&key).await?;
        }
    }
    Ok(())
}
