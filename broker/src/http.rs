//! The operations HTTP endpoint on `--http-addr`: `/healthz` (the process is
//! up), `/readyz` (the metadata store answers) and `/metrics` (Prometheus
//! text), SQL over topic tables (`POST /sql`), and table maintenance on demand (`POST /admin/tables/{topic}/compact`
//! and `/expire`). The Iceberg REST catalog is merged in by the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
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
        .route("/sql", post(run_sql))
        .route("/admin/tables/{topic}/compact", post(compact_table))
        .route("/admin/tables/{topic}/expire", post(expire_table))
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

/// Query of `POST /admin/tables/{topic}/expire`.
#[derive(serde::Deserialize)]
struct ExpireQuery {
    /// Snapshots older than this many seconds go (default 900).
    max_age_secs: Option<u64>,
    /// At least this many snapshots stay (default 1).
    keep: Option<usize>,
}

type AdminResult = Result<Json<crate::maintenance::Outcome>, (StatusCode, String)>;

async fn admin_topic(
    ctx: &Ctx,
    topic: &str,
) -> Result<crate::meta::TopicRecord, (StatusCode, String)> {
    match ctx.broker.meta.topic(topic).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err((StatusCode::NOT_FOUND, format!("no topic '{topic}'\n"))),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))),
    }
}

async fn compact_table(State(ctx): State<Ctx>, Path(topic): Path<String>) -> AdminResult {
    let topic = admin_topic(&ctx, &topic).await?;
    let lake = ctx.broker.lake.lakehouse().clone();
    crate::maintenance::compact(&ctx.broker, &lake, &topic)
        .await
        .map(Json)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")))
}

async fn expire_table(
    State(ctx): State<Ctx>,
    Path(topic): Path<String>,
    Query(q): Query<ExpireQuery>,
) -> AdminResult {
    let topic = admin_topic(&ctx, &topic).await?;
    let lake = ctx.broker.lake.lakehouse().clone();
    let max_age = Duration::from_secs(q.max_age_secs.unwrap_or(900));
    crate::maintenance::expire(&lake, &topic, max_age, q.keep.unwrap_or(1))
        .await
        .map(Json)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")))
}

#[derive(Debug, serde::Deserialize)]
struct SqlParams {
    purpose: Option<String>,
}

/// Most rows one SQL answer carries.
const SQL_MAX_ROWS: usize = 10_000;

/// `POST /sql` with the statement as the body: a read-only query over the
/// topic tables, answered as JSON (`columns`, `rows`, `truncated`).
///
/// `?purpose=NAME` reads for that purpose; without it the caller reads as
/// a consumer that declares none (unrestricted fields only).
async fn run_sql(
    State(ctx): State<Ctx>,
    Query(params): Query<SqlParams>,
    body: String,
) -> Result<Json<sluice_lakehouse::sql::QueryResult>, (StatusCode, String)> {
    let broker = &ctx.broker;
    let principal = crate::policy::ANONYMOUS;
    let purpose = match params.purpose.as_deref() {
        None | Some("") => None,
        Some(p) => Some(broker.config.policies.allow(principal, p).map_err(|why| {
            tracing::warn!(target: "sluice::audit", principal, reason = %why, "SQL purpose refused");
            (StatusCode::FORBIDDEN, format!("{why}\n"))
        })?),
    };
    let guards = crate::policy::sql_guards(broker, purpose.as_ref())
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")))?;
    tracing::info!(
        target: "sluice::audit",
        principal,
        purpose = purpose.as_ref().map_or("none", |p| p.0.as_str()),
        "SQL query"
    );
    let lake = broker.lake.lakehouse();
    let namespace = lake.namespace().as_ref().join(".");
    sluice_lakehouse::sql::query(
        Arc::new(lake.catalog().clone()),
        &namespace,
        &body,
        SQL_MAX_ROWS,
        &guards,
    )
    .await
    .map(Json)
    .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))
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
