//! The Confluent Schema Registry REST API over a [`Registry`].
//!
//! Bodies are parsed by hand from the raw bytes rather than with axum's
//! `Json` extractor so that any content type clients send
//! (`application/vnd.schemaregistry.v1+json`, `application/json`, or none)
//! is accepted and malformed bodies get a registry-style error body.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::RegistryError;
use crate::registry::{PROTOBUF, Registry, SchemaSubmission, VersionDetails, VersionSpec};
use crate::store::SchemaReference;

/// The content type Confluent's registry answers with.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, RegistryError>;

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "schema registry request failed");
        }
        let body = json!({ "error_code": self.error_code(), "message": self.to_string() });
        (
            status,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            body.to_string(),
        )
            .into_response()
    }
}

fn ok_json<T: Serialize>(value: &T) -> ApiResult {
    let body = serde_json::to_string(value)
        .map_err(|e| RegistryError::Store(format!("encoding response: {e}")))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}

fn ok_text(text: String) -> ApiResult {
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response())
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|e| RegistryError::BadRequest(e.to_string()))
}

fn parse_id(id: &str) -> Result<u32, RegistryError> {
    id.parse()
        .map_err(|_| RegistryError::SchemaNotFound(format!("schema id '{id}' is not a valid id")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    #[serde(default)]
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<SchemaReference>>,
}

impl From<SchemaBody> for SchemaSubmission {
    fn from(body: SchemaBody) -> Self {
        SchemaSubmission {
            schema: body.schema,
            schema_type: body.schema_type,
            references: body.references.unwrap_or_default(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionResponse {
    subject: String,
    version: i32,
    id: u32,
    schema_type: String,
    schema: String,
    references: Vec<SchemaReference>,
}

/// Renders a schema for a response: its text, or with
/// `format=serialized` the base64 `FileDescriptorProto` that
/// confluent-kafka's Python deserializer asks for.
async fn render_schema(
    registry: &Registry,
    id: u32,
    text: String,
    params: &HashMap<String, String>,
) -> Result<String, RegistryError> {
    if params.get("format").is_some_and(|f| f == "serialized") {
        Ok(registry.schema_by_id(id).await?.serialized_base64())
    } else {
        Ok(text)
    }
}

async fn version_response(
    registry: &Registry,
    details: VersionDetails,
    params: &HashMap<String, String>,
) -> ApiResult {
    let schema = render_schema(registry, details.id, details.schema, params).await?;
    ok_json(&VersionResponse {
        subject: details.subject,
        version: details.version,
        id: details.id,
        schema_type: details.schema_type,
        schema,
        references: details.references,
    })
}

impl Registry {
    /// The REST API as an axum router, ready to be served on a listener.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(root))
            .route("/subjects", get(list_subjects))
            .route("/subjects/{subject}", post(lookup).delete(delete_subject))
            .route(
                "/subjects/{subject}/versions",
                get(list_versions).post(register),
            )
            .route(
                "/subjects/{subject}/versions/{version}",
                get(get_version).delete(delete_version),
            )
            .route(
                "/subjects/{subject}/versions/{version}/schema",
                get(get_version_schema),
            )
            .route(
                "/subjects/{subject}/versions/{version}/referencedby",
                get(referenced_by),
            )
            .route("/schemas/types", get(schema_types))
            .route("/schemas/ids/{id}", get(get_schema))
            .route("/schemas/ids/{id}/schema", get(get_schema_text))
            .route("/schemas/ids/{id}/subjects", get(schema_subjects))
            .route("/schemas/ids/{id}/versions", get(schema_versions))
            .route(
                "/config",
                get(get_global_config)
                    .put(put_global_config)
                    .delete(delete_global_config),
            )
            .route(
                "/config/{subject}",
                get(get_subject_config)
                    .put(put_subject_config)
                    .delete(delete_subject_config),
            )
            .route("/mode", get(get_global_mode).put(put_global_mode))
            .route(
                "/mode/{subject}",
                get(get_subject_mode)
                    .put(put_subject_mode)
                    .delete(delete_subject_mode),
            )
            .route(
                "/compatibility/subjects/{subject}/versions",
                post(check_all),
            )
            .route(
                "/compatibility/subjects/{subject}/versions/{version}",
                post(check_version),
            )
            .fallback(not_found)
            .with_state(self.clone())
    }
}

async fn root() -> ApiResult {
    ok_json(&json!({}))
}

async fn not_found() -> Response {
    let body = json!({ "error_code": 404, "message": "HTTP 404 Not Found" });
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

async fn list_subjects(State(registry): State<Registry>, Query(params): Params) -> ApiResult {
    ok_json(&registry.subjects(flag(&params, "deleted")).await?)
}

async fn register(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let submission: SchemaSubmission = parse_body::<SchemaBody>(&body)?.into();
    let (id, _version) = registry
        .register(&subject, &submission, flag(&params, "normalize"))
        .await?;
    ok_json(&json!({ "id": id }))
}

async fn lookup(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let submission: SchemaSubmission = parse_body::<SchemaBody>(&body)?.into();
    let details = registry
        .lookup(&subject, &submission, flag(&params, "deleted"))
        .await?;
    version_response(&registry, details, &params).await
}

async fn delete_subject(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    ok_json(
        &registry
            .delete_subject(&subject, flag(&params, "permanent"))
            .await?,
    )
}

async fn list_versions(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    ok_json(
        &registry
            .versions(&subject, flag(&params, "deleted"))
            .await?,
    )
}

async fn get_version(
    State(registry): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let spec: VersionSpec = version.parse()?;
    let details = registry
        .version(&subject, spec, flag(&params, "deleted"))
        .await?;
    version_response(&registry, details, &params).await
}

async fn get_version_schema(
    State(registry): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let spec: VersionSpec = version.parse()?;
    let details = registry
        .version(&subject, spec, flag(&params, "deleted"))
        .await?;
    ok_text(render_schema(&registry, details.id, details.schema, &params).await?)
}

async fn referenced_by(
    State(registry): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    let spec: VersionSpec = version.parse()?;
    let details = registry.version(&subject, spec, false).await?;
    ok_json(&registry.referenced_by(&subject, details.version).await?)
}

async fn delete_version(
    State(registry): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let spec: VersionSpec = version.parse()?;
    ok_json(
        &registry
            .delete_version(&subject, spec, flag(&params, "permanent"))
            .await?,
    )
}

async fn schema_types() -> ApiResult {
    ok_json(&[PROTOBUF])
}

async fn get_schema(
    State(registry): State<Registry>,
    Path(id): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let id = parse_id(&id)?;
    let stored = registry.stored_schema(id).await?;
    let schema = render_schema(&registry, id, stored.schema, &params).await?;
    ok_json(&json!({
        "schema": schema,
        "schemaType": stored.schema_type,
        "references": stored.references,
    }))
}

async fn get_schema_text(
    State(registry): State<Registry>,
    Path(id): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let id = parse_id(&id)?;
    let stored = registry.stored_schema(id).await?;
    ok_text(render_schema(&registry, id, stored.schema, &params).await?)
}

async fn schema_subjects(
    State(registry): State<Registry>,
    Path(id): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let rows = registry
        .versions_of_schema(parse_id(&id)?, flag(&params, "deleted"))
        .await?;
    let mut subjects: Vec<String> = rows.into_iter().map(|r| r.subject).collect();
    subjects.dedup();
    ok_json(&subjects)
}

async fn schema_versions(
    State(registry): State<Registry>,
    Path(id): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let rows = registry
        .versions_of_schema(parse_id(&id)?, flag(&params, "deleted"))
        .await?;
    let pairs: Vec<_> = rows
        .into_iter()
        .map(|r| json!({ "subject": r.subject, "version": r.version }))
        .collect();
    ok_json(&pairs)
}

#[derive(Deserialize)]
struct CompatibilityBody {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

impl CompatibilityBody {
    fn level(self) -> Result<String, RegistryError> {
        self.compatibility
            .or(self.compatibility_level)
            .ok_or_else(|| RegistryError::InvalidCompatibility("(missing)".to_owned()))
    }
}

async fn get_global_config(State(registry): State<Registry>) -> ApiResult {
    let level = registry.effective_compatibility(None).await?;
    ok_json(&json!({ "compatibilityLevel": level.as_str() }))
}

async fn put_global_config(State(registry): State<Registry>, body: Bytes) -> ApiResult {
    let level = parse_body::<CompatibilityBody>(&body)?.level()?;
    let level = registry.set_compatibility(None, &level).await?;
    ok_json(&json!({ "compatibility": level.as_str() }))
}

async fn delete_global_config(State(registry): State<Registry>) -> ApiResult {
    let level = registry.delete_compatibility(None).await?;
    ok_json(&json!({ "compatibilityLevel": level.as_str() }))
}

async fn get_subject_config(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let level = registry
        .subject_compatibility(&subject, flag(&params, "defaultToGlobal"))
        .await?;
    ok_json(&json!({ "compatibilityLevel": level.as_str() }))
}

async fn put_subject_config(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let level = parse_body::<CompatibilityBody>(&body)?.level()?;
    let level = registry.set_compatibility(Some(&subject), &level).await?;
    ok_json(&json!({ "compatibility": level.as_str() }))
}

async fn delete_subject_config(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
) -> ApiResult {
    let level = registry.delete_compatibility(Some(&subject)).await?;
    ok_json(&json!({ "compatibilityLevel": level.as_str() }))
}

#[derive(Deserialize)]
struct ModeBody {
    #[serde(default)]
    mode: String,
}

async fn get_global_mode(State(registry): State<Registry>) -> ApiResult {
    let mode = registry.effective_mode(None).await?;
    ok_json(&json!({ "mode": mode.as_str() }))
}

async fn put_global_mode(State(registry): State<Registry>, body: Bytes) -> ApiResult {
    let mode = parse_body::<ModeBody>(&body)?.mode;
    let mode = registry.set_mode(None, &mode).await?;
    ok_json(&json!({ "mode": mode.as_str() }))
}

async fn get_subject_mode(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let mode = registry
        .subject_mode(&subject, flag(&params, "defaultToGlobal"))
        .await?;
    ok_json(&json!({ "mode": mode.as_str() }))
}

async fn put_subject_mode(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mode = parse_body::<ModeBody>(&body)?.mode;
    let mode = registry.set_mode(Some(&subject), &mode).await?;
    ok_json(&json!({ "mode": mode.as_str() }))
}

async fn delete_subject_mode(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
) -> ApiResult {
    let mode = registry.delete_mode(&subject).await?;
    ok_json(&json!({ "mode": mode.as_str() }))
}

fn compatibility_response(problems: Vec<String>, params: &HashMap<String, String>) -> ApiResult {
    if flag(params, "verbose") {
        ok_json(&json!({ "is_compatible": problems.is_empty(), "messages": problems }))
    } else {
        ok_json(&json!({ "is_compatible": problems.is_empty() }))
    }
}

async fn check_all(
    State(registry): State<Registry>,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let submission: SchemaSubmission = parse_body::<SchemaBody>(&body)?.into();
    let problems = registry.check(&subject, None, &submission).await?;
    compatibility_response(problems, &params)
}

async fn check_version(
    State(registry): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let spec: VersionSpec = version.parse()?;
    let submission: SchemaSubmission = parse_body::<SchemaBody>(&body)?.into();
    let problems = registry.check(&subject, Some(spec), &submission).await?;
    compatibility_response(problems, &params)
}
