//! The Iceberg REST catalog API (the `/v1/...` routes of the Iceberg REST
//! specification) over the topic tables, so any engine connects with a URL.
//!
//! Reads are complete: config, namespaces, tables, load table. Commits are
//! accepted for maintenance (properties, snapshot expiry, refs, statistics);
//! changes that would add data or change the schema are refused, because a
//! topic's table is written by the broker's archiver alone and must stay in
//! step with the topic's offsets.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableIdent, TableRequirement, TableUpdate};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::catalog::{ArchiveIndex, LakeCatalog};

/// Routes under `/v1`, to merge into the HTTP server's router.
pub fn router(catalog: Arc<LakeCatalog>) -> Router {
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/namespaces", get(list_namespaces))
        .route(
            "/v1/namespaces/{ns}",
            get(get_namespace).head(namespace_exists),
        )
        .route("/v1/namespaces/{ns}/tables", get(list_tables))
        .route(
            "/v1/namespaces/{ns}/tables/{table}",
            get(load_table).head(table_exists).post(commit_table),
        )
        .with_state(catalog)
}

/// An error in the REST spec's shape.
struct RestError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.status.as_u16(),
        }});
        (self.status, Json(body)).into_response()
    }
}

impl From<iceberg::Error> for RestError {
    fn from(e: iceberg::Error) -> RestError {
        let (status, kind) = match e.kind() {
            ErrorKind::NamespaceNotFound => (StatusCode::NOT_FOUND, "NoSuchNamespaceException"),
            ErrorKind::TableNotFound => (StatusCode::NOT_FOUND, "NoSuchTableException"),
            ErrorKind::TableAlreadyExists | ErrorKind::NamespaceAlreadyExists => {
                (StatusCode::CONFLICT, "AlreadyExistsException")
            }
            ErrorKind::CatalogCommitConflicts => (StatusCode::CONFLICT, "CommitFailedException"),
            ErrorKind::FeatureUnsupported => {
                (StatusCode::NOT_ACCEPTABLE, "UnsupportedOperationException")
            }
            ErrorKind::DataInvalid | ErrorKind::PreconditionFailed => {
                (StatusCode::BAD_REQUEST, "BadRequestException")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailureException"),
        };
        // Failed requirements are commit conflicts in the spec.
        let (status, kind) = if e.message().contains("Requirement failed") {
            (StatusCode::CONFLICT, "CommitFailedException")
        } else {
            (status, kind)
        };
        RestError {
            status,
            kind,
            message: e.to_string(),
        }
    }
}

type RestResult<T> = Result<T, RestError>;

/// Namespace path segment: parts joined by the unit separator (0x1F).
fn namespace(ns: &str) -> RestResult<NamespaceIdent> {
    NamespaceIdent::from_strs(ns.split('\u{1f}')).map_err(RestError::from)
}

async fn config() -> Json<Value> {
    Json(json!({"defaults": {}, "overrides": {}}))
}

async fn list_namespaces(State(catalog): State<Arc<LakeCatalog>>) -> RestResult<Json<Value>> {
    let list = catalog.list_namespaces(None).await?;
    let names: Vec<&Vec<String>> = list.iter().map(|n| n.as_ref()).collect();
    Ok(Json(json!({ "namespaces": names })))
}

async fn get_namespace(
    State(catalog): State<Arc<LakeCatalog>>,
    Path(ns): Path<String>,
) -> RestResult<Json<Value>> {
    let ns = catalog.get_namespace(&namespace(&ns)?).await?;
    Ok(Json(
        json!({ "namespace": ns.name().as_ref(), "properties": ns.properties() }),
    ))
}

async fn namespace_exists(
    State(catalog): State<Arc<LakeCatalog>>,
    Path(ns): Path<String>,
) -> RestResult<StatusCode> {
    Ok(match catalog.namespace_exists(&namespace(&ns)?).await? {
        true => StatusCode::NO_CONTENT,
        false => StatusCode::NOT_FOUND,
    })
}

async fn list_tables(
    State(catalog): State<Arc<LakeCatalog>>,
    Path(ns): Path<String>,
) -> RestResult<Json<Value>> {
    let ns = namespace(&ns)?;
    if !catalog.namespace_exists(&ns).await? {
        return Err(iceberg::Error::new(
            ErrorKind::NamespaceNotFound,
            format!("no namespace {}", ns.as_ref().join(".")),
        )
        .into());
    }
    let tables = catalog.list_tables(&ns).await?;
    let ids: Vec<Value> = tables
        .iter()
        .map(|t| json!({"namespace": t.namespace().as_ref(), "name": t.name()}))
        .collect();
    Ok(Json(json!({ "identifiers": ids })))
}

fn load_result(table: &iceberg::table::Table) -> RestResult<Json<Value>> {
    let metadata = serde_json::to_value(table.metadata()).map_err(|e| RestError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "ServiceFailureException",
        message: format!("cannot serialise table metadata: {e}"),
    })?;
    Ok(Json(json!({
        "metadata-location": table.metadata_location(),
        "metadata": metadata,
        "config": {},
    })))
}

async fn load_table(
    State(catalog): State<Arc<LakeCatalog>>,
    Path((ns, table)): Path<(String, String)>,
) -> RestResult<Json<Value>> {
    let ident = TableIdent::new(namespace(&ns)?, table);
    load_result(&catalog.load_table(&ident).await?)
}

async fn table_exists(
    State(catalog): State<Arc<LakeCatalog>>,
    Path((ns, table)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    let ident = TableIdent::new(namespace(&ns)?, table);
    Ok(match catalog.table_exists(&ident).await? {
        true => StatusCode::NO_CONTENT,
        false => StatusCode::NOT_FOUND,
    })
}

#[derive(Deserialize)]
struct CommitRequest {
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

/// Whether an update may come from outside: maintenance only.
fn maintenance(update: &TableUpdate) -> bool {
    matches!(
        update,
        TableUpdate::SetProperties { .. }
            | TableUpdate::RemoveProperties { .. }
            | TableUpdate::RemoveSnapshots { .. }
            | TableUpdate::RemoveSnapshotRef { .. }
            | TableUpdate::SetSnapshotRef { .. }
            | TableUpdate::SetStatistics { .. }
            | TableUpdate::RemoveStatistics { .. }
            | TableUpdate::SetPartitionStatistics { .. }
            | TableUpdate::RemovePartitionStatistics { .. }
    )
}

async fn commit_table(
    State(catalog): State<Arc<LakeCatalog>>,
    Path((ns, table)): Path<(String, String)>,
    Json(request): Json<CommitRequest>,
) -> RestResult<Json<Value>> {
    let ident = TableIdent::new(namespace(&ns)?, table);
    if let Some(bad) = request.updates.iter().find(|u| !maintenance(u)) {
        let action = serde_json::to_value(bad)
            .ok()
            .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "this update".into());
        return Err(RestError {
            status: StatusCode::FORBIDDEN,
            kind: "ForbiddenException",
            message: format!(
                "{action} is not allowed: topic tables are written by the broker; produce to the topic instead"
            ),
        });
    }
    let table = catalog
        .commit_changes(
            &ident,
            request.requirements,
            request.updates,
            &ArchiveIndex::default(),
        )
        .await?;
    load_result(&table)
}
