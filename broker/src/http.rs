//! The operations HTTP endpoint on `--http-addr`: `/healthz` (the process is
//! up), `/readyz` (the metadata store answers) and `/metrics` (Prometheus
//! text). The Iceberg REST catalog and SQL will live here too.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::state::SharedBroker;

/// Histogram buckets (seconds) for request and flush latencies.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide metrics recorder once and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

#[derive(Clone)]
struct Ctx {
    broker: SharedBroker,
    metrics: PrometheusHandle,
}

pub fn router(broker: SharedBroker) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Ctx {
            broker,
            metrics: metrics_handle(),
        })
}

async fn readyz(State(ctx): State<Ctx>) -> (StatusCode, String) {
    match tokio::time::timeout(Duration::from_secs(2), ctx.broker.meta.cluster_id()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("metadata store unavailable: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metadata store did not answer within 2 s\n".into(),
        ),
    }
}

async fn render_metrics(State(ctx): State<Ctx>) -> String {
    ctx.metrics.render()
}

/// Serves `router` on `addr` until `shutdown`; bind errors are returned at once.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    what: &'static str,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what} (choose another address)")
    })?;
    tracing::info!(%addr, "{what} listening");
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "{what} stopped");
        }
    }))
}

/// Runs the recorder's periodic maintenance (histogram windows).
pub async fn metrics_upkeep(shutdown: CancellationToken) {
    let handle = metrics_handle();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}
