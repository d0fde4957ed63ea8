//! The operations HTTP endpoint on `--http-addr`: `/healthz` (the process is
//! up), `/readyz` (the metadata store answers) and `/metrics` (Prometheus
//! text), SQL over topic tables (`POST /sql`), a table's columns and schema
//! history (`GET /admin/tables/{topic}`), and table maintenance on demand
//! (`POST /admin/tables/{topic}/compact` and `/expire`). The Iceberg REST catalog is merged in by the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Extension, State};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::node::state::SharedBroker;
use crate::security::http_auth::{Caller, Tokens};

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
        .route("/admin/tables/{topic}", get(describe_table))
        .route("/admin/tables/{topic}/compact", post(compact_table))
        .route("/admin/tables/{topic}/expire", post(expire_table))
        .route("/admin/tokens", get(list_tokens).post(create_token))
        .route(
            "/admin/grants",
            get(list_grants).post(add_grant).delete(remove_grant),
        )
        .route("/admin/tokens/{id}", axum::routing::delete(revoke_token))
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

type AdminResult = Result<Json<crate::lake::maintenance::Outcome>, (StatusCode, String)>;

async fn admin_topic(
    ctx: &Ctx,
    topic: &str,
) -> Result<crate::store::meta::TopicRecord, (StatusCode, String)> {
    match ctx.broker.meta.topic(topic).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err((StatusCode::NOT_FOUND, format!("no topic '{topic}'\n"))),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))),
    }
}

/// Requires `--http-auth` on every interface it is given to, with the
/// callers found in [`Caller`].
pub fn protect(router: Router, broker: SharedBroker) -> Router {
    let auth = crate::security::http_auth::HttpAuth {
        settings: broker.config.security.clone(),
        credentials: broker.credentials.clone(),
        meta: broker.meta.clone(),
    };
    router.layer(axum::middleware::from_fn_with_state(
        auth,
        crate::security::http_auth::authenticate,
    ))
}

type Refusal = (StatusCode, String);

/// The Iceberg REST catalog with the authorizer in front: loading a table
/// needs READ on its topic, committing to one ALTER on the cluster, and
/// table lists leave out the tables of topics the caller may not READ.
pub fn guard_catalog(router: Router, broker: SharedBroker) -> Router {
    router.layer(axum::middleware::from_fn_with_state(broker, catalog_acls))
}

async fn catalog_acls(
    State(broker): State<SharedBroker>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !broker.authorizer.enabled() {
        return next.run(req).await;
    }
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let forbidden = |what: String| {
        (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"error": {
                "message": what, "type": "ForbiddenException", "code": 403}})),
        )
            .into_response()
    };
    let readable = |table: String| {
        let broker = broker.clone();
        let caller = caller.clone();
        async move {
            let Ok(topics) = broker.meta.list_topics().await else {
                return false;
            };
            for t in topics
                .iter()
                .filter(|t| sluice_lakehouse::table::table_name(&t.name) == table)
            {
                let ok = broker
                    .authorizer
                    .shows(
                        &caller.principal,
                        caller.ip,
                        crate::security::acl::Operation::Read,
                        crate::security::acl::ResourceType::Topic,
                        &t.name,
                    )
                    .await;
                if !ok {
                    return false;
                }
            }
            true
        }
    };
    match parts.as_slice() {
        ["v1", "namespaces", _, "tables", table] => {
            let table = table.to_string();
            if req.method() == axum::http::Method::POST {
                if let Err((_, why)) = admin_only_for(&broker, &caller).await {
                    return forbidden(why);
                }
            } else if !readable(table.clone()).await {
                return forbidden(format!(
                    "{} may not read table {table} (needs READ on its topic)",
                    caller.principal
                ));
            }
            next.run(req).await
        }
        ["v1", "namespaces", _, "tables"] => {
            let resp = next.run(req).await;
            if resp.status() != StatusCode::OK {
                return resp;
            }
            let (head, body) = resp.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                return axum::response::Response::from_parts(head, bytes.into());
            };
            if let Some(ids) = v["identifiers"].as_array() {
                let mut kept = Vec::new();
                for id in ids {
                    let name = id["name"].as_str().unwrap_or("").to_string();
                    if readable(name).await {
                        kept.push(id.clone());
                    }
                }
                v["identifiers"] = serde_json::Value::Array(kept);
            }
            let mut head = head;
            head.headers.remove(axum::http::header::CONTENT_LENGTH);
            axum::response::Response::from_parts(head, v.to_string().into())
        }
        _ => next.run(req).await,
    }
}

/// Admin endpoints need ALTER on the cluster (anyone, without an authorizer).
async fn admin_only(ctx: &Ctx, caller: &Caller) -> Result<(), Refusal> {
    admin_only_for(&ctx.broker, caller).await
}

async fn admin_only_for(broker: &SharedBroker, caller: &Caller) -> Result<(), Refusal> {
    let ok = broker
        .authorizer
        .allows(
            &caller.principal,
            caller.ip,
            crate::security::acl::Operation::Alter,
            crate::security::acl::ResourceType::Cluster,
            crate::security::acl::CLUSTER_NAME,
        )
        .await;
    if ok {
        Ok(())
    } else {
        Err((
            StatusCode::FORBIDDEN,
            format!(
                "{} may not use the admin API (needs ALTER on the cluster)\n",
                caller.principal
            ),
        ))
    }
}

#[derive(serde::Deserialize)]
struct NewToken {
    principal: String,
}

/// `POST /admin/tokens` with `{"principal": "User:etl"}`: a new bearer
/// token, shown this once.
async fn create_token(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(want): Json<NewToken>,
) -> Result<Json<serde_json::Value>, Refusal> {
    admin_only(&ctx, &caller).await?;
    match want.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "principal '{}' is not TYPE:NAME (e.g. User:etl)\n",
                    want.principal
                ),
            ));
        }
    }
    let (id, token) = Tokens::new(ctx.broker.meta.clone())
        .create(&want.principal)
        .await
        .map_err(unavailable)?;
    tracing::info!(target: "sluice::audit", by = %caller.principal, principal = %want.principal, id, "bearer token created");
    Ok(Json(serde_json::json!({
        "id": id,
        "principal": want.principal,
        "token": token,
    })))
}

async fn list_tokens(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<crate::security::http_auth::TokenInfo>>, Refusal> {
    admin_only(&ctx, &caller).await?;
    Tokens::new(ctx.broker.meta.clone())
        .list()
        .await
        .map(Json)
        .map_err(unavailable)
}

async fn revoke_token(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<String, Refusal> {
    admin_only(&ctx, &caller).await?;
    let n = Tokens::new(ctx.broker.meta.clone())
        .revoke(&id)
        .await
        .map_err(unavailable)?;
    if n == 0 {
        return Err((StatusCode::NOT_FOUND, format!("no token with id '{id}'\n")));
    }
    tracing::info!(target: "sluice::audit", by = %caller.principal, id, "bearer token revoked");
    Ok("revoked\n".into())
}

#[derive(serde::Deserialize)]
struct Grant {
    principal: String,
    purpose: String,
}

/// `GET /admin/grants`: the stored grants and the policy file's, by principal.
async fn list_grants(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Refusal> {
    admin_only(&ctx, &caller).await?;
    let stored = ctx.broker.purpose_grants.all().await.map_err(unavailable)?;
    Ok(Json(serde_json::json!({
        "stored": *stored,
        "file": ctx.broker.config.policies.file_grants(),
    })))
}

/// `POST /admin/grants` with `{"principal": "User:crm", "purpose": "billing"}`.
async fn add_grant(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(g): Json<Grant>,
) -> Result<String, Refusal> {
    admin_only(&ctx, &caller).await?;
    if !ctx.broker.config.policies.knows(&g.purpose) {
        let known: Vec<&str> = ctx.broker.config.policies.purposes().collect();
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "purpose '{}' is not in the policy file (known: {})\n",
                g.purpose,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    if !g.principal.contains(':') {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "principal '{}' is not TYPE:NAME (e.g. User:crm)\n",
                g.principal
            ),
        ));
    }
    ctx.broker
        .purpose_grants
        .grant(&g.principal, &g.purpose)
        .await
        .map_err(unavailable)?;
    tracing::info!(target: "sluice::audit", by = %caller.principal, principal = %g.principal, purpose = %g.purpose, "purpose granted");
    Ok("granted\n".into())
}

/// `DELETE /admin/grants` with the same body.
async fn remove_grant(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(g): Json<Grant>,
) -> Result<String, Refusal> {
    admin_only(&ctx, &caller).await?;
    let found = ctx
        .broker
        .purpose_grants
        .revoke(&g.principal, &g.purpose)
        .await
        .map_err(unavailable)?;
    if !found {
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "{} has no stored grant of '{}' (grants in the policy file change with the file)\n",
                g.principal, g.purpose
            ),
        ));
    }
    tracing::info!(target: "sluice::audit", by = %caller.principal, principal = %g.principal, purpose = %g.purpose, "purpose grant revoked");
    Ok("revoked\n".into())
}

fn unavailable(e: crate::store::meta::MetaError) -> Refusal {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))
}

/// `GET /admin/tables/{topic}`: the table's columns, the schema versions
/// that brought each in and retired it, and its snapshot totals. Needs
/// DESCRIBE on the topic.
async fn describe_table(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
) -> Result<Json<sluice_lakehouse::describe::TableDescription>, Refusal> {
    let record = admin_topic(&ctx, &topic).await?;
    let allowed = ctx
        .broker
        .authorizer
        .allows(
            &caller.principal,
            caller.ip,
            crate::security::acl::Operation::Describe,
            crate::security::acl::ResourceType::Topic,
            &record.name,
        )
        .await;
    if !allowed {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "{} may not describe topic '{topic}' (needs DESCRIBE on it)\n",
                caller.principal
            ),
        ));
    }
    let lake = ctx.broker.lake.lakehouse();
    let loaded = lake.load(&topic).await.map_err(|e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the table of topic '{topic}': {e}\n"),
        )
    })?;
    let table = loaded.filter(|t| {
        t.table
            .metadata()
            .properties()
            .get(sluice_lakehouse::table::TOPIC_ID_PROPERTY)
            == Some(&record.uuid.to_string())
    });
    let Some(table) = table else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("topic '{topic}' has no table yet: nothing of it has been archived\n"),
        ));
    };
    sluice_lakehouse::describe::describe(&table.table)
        .map(Json)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))
}

async fn compact_table(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
) -> AdminResult {
    admin_only(&ctx, &caller).await?;
    let topic = admin_topic(&ctx, &topic).await?;
    let lake = ctx.broker.lake.lakehouse().clone();
    crate::lake::maintenance::compact(&ctx.broker, &lake, &topic)
        .await
        .map(Json)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")))
}

async fn expire_table(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    Query(q): Query<ExpireQuery>,
) -> AdminResult {
    admin_only(&ctx, &caller).await?;
    let topic = admin_topic(&ctx, &topic).await?;
    let lake = ctx.broker.lake.lakehouse().clone();
    let max_age = Duration::from_secs(q.max_age_secs.unwrap_or(900));
    crate::lake::maintenance::expire(&lake, &topic, max_age, q.keep.unwrap_or(1))
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
    Extension(caller): Extension<Caller>,
    Query(params): Query<SqlParams>,
    body: String,
) -> Result<Json<sluice_lakehouse::sql::QueryResult>, (StatusCode, String)> {
    let broker = &ctx.broker;
    let principal = &*caller.principal;
    let stored = broker.purpose_grants.all().await.map_err(unavailable)?;
    let purpose = match params.purpose.as_deref() {
        None | Some("") => None,
        Some(p) => Some(broker.config.policies.allow_granted(principal, p, &stored).map_err(|why| {
            tracing::warn!(target: "sluice::audit", principal, reason = %why, "SQL purpose refused");
            (StatusCode::FORBIDDEN, format!("{why}\n"))
        })?),
    };
    let mut guards = crate::policy::purposes::sql_guards(
        &broker.config.policies,
        &broker.validator,
        &broker.meta,
        broker.lake.lakehouse(),
        purpose.as_ref(),
    )
    .await
    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")))?;
    // Tables of topics the caller may not READ are not there for them.
    if broker.authorizer.enabled() {
        for t in broker.meta.list_topics().await.map_err(unavailable)? {
            let readable = broker
                .authorizer
                .shows(
                    principal,
                    caller.ip,
                    crate::security::acl::Operation::Read,
                    crate::security::acl::ResourceType::Topic,
                    &t.name,
                )
                .await;
            if !readable {
                let table = broker.lake.lakehouse().ident(&t.name);
                guards.entry(table.name().to_owned()).or_default().denied = true;
            }
        }
    }
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
pub fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    what: &'static str,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "{what} listening");
    }
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, service)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "{what} stopped");
        }
    })
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
