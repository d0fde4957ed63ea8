//! A read-only [`SchemaStore`] over another registry's REST API (Sluice's
//! own or Confluent's), so a process without the metadata database, such
//! as the gateway, validates records against the same schemas.
//!
//! Every read is one or a few HTTP requests; the callers cache what they
//! read ([`crate::Registry`] keeps compiled schemas by id, the broker's
//! validator keeps topic bindings for a few seconds), and this store keeps
//! the schema id of each subject version, which never changes once
//! registered. Writes are refused: schemas are registered at the remote
//! registry itself.

use std::time::Duration;

use futures::FutureExt as _;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::RegistryError;
use crate::registry::PROTOBUF;
use crate::store::{
    NewSchema, SchemaReference, SchemaStore, SettingKind, StoreFuture, StoredSchema, SubjectVersion,
};

/// How long one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the schema id of a subject version is remembered. Registered
/// versions never change their id; the bound only matters after a hard
/// delete and re-registration under the same number.
const VERSION_ID_TTL: Duration = Duration::from_secs(300);

/// A read-only view of a remote Confluent-compatible registry.
pub struct RemoteStore {
    base: Url,
    client: reqwest::Client,
    version_ids: moka::future::Cache<(String, i32), u32>,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<SchemaReference>,
}

#[derive(Deserialize)]
struct VersionBody {
    id: u32,
}

#[derive(Deserialize)]
struct SubjectVersionPair {
    subject: String,
    version: i32,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: u32,
    #[serde(default)]
    message: String,
}

impl RemoteStore {
    /// A store reading the registry at `url` (for example `http://127.0.0.1:8081`).
    pub fn new(url: &str) -> Result<RemoteStore, RegistryError> {
        let mut base = Url::parse(url)
            .map_err(|e| RegistryError::Store(format!("invalid registry URL '{url}': {e}")))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(RegistryError::Store(format!(
                "invalid registry URL '{url}': expected http://HOST:PORT"
            )));
        }
        // Path segments are appended to the base; an empty last segment
        // (trailing slash) would leave a double slash.
        if let Ok(mut segments) = base.path_segments_mut() {
            segments.pop_if_empty();
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| RegistryError::Store(format!("cannot build an HTTP client: {e}")))?;
        Ok(RemoteStore {
            base,
            client,
            version_ids: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(VERSION_ID_TTL)
                .build(),
        })
    }

    /// The registry this store reads.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    fn url_for(&self, segments: &[&str], deleted: bool) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        if deleted {
            url.set_query(Some("deleted=true"));
        }
        url
    }

    /// GETs `url` as JSON. `Ok(None)` is a 404 (whatever is missing).
    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<Option<T>, RegistryError> {
        let unreachable =
            |e: reqwest::Error| RegistryError::Store(format!("cannot read {url}: {e}"));
        let resp = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, crate::CONTENT_TYPE)
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let detail = match serde_json::from_str::<ErrorBody>(&body) {
                Ok(e) => format!("error {}: {}", e.error_code, e.message),
                Err(_) => body,
            };
            return Err(RegistryError::Store(format!(
                "registry answered {url} with {status}: {detail}"
            )));
        }
        resp.json::<T>().await.map(Some).map_err(|e| {
            RegistryError::Store(format!("registry answer to {url} is not understood: {e}"))
        })
    }

    async fn version_id(&self, subject: &str, version: i32) -> Result<Option<u32>, RegistryError> {
        let key = (subject.to_owned(), version);
        if let Some(id) = self.version_ids.get(&key).await {
            return Ok(Some(id));
        }
        let v = version.to_string();
        let body: Option<VersionBody> = self
            .get(self.url_for(&["subjects", subject, "versions", &v], true))
            .await?;
        if let Some(b) = &body {
            self.version_ids.insert(key, b.id).await;
        }
        Ok(body.map(|b| b.id))
    }

    fn read_only(&self, what: &str) -> RegistryError {
        RegistryError::OperationNotPermitted(format!(
            "cannot {what}: this is a read-only view of the registry at {}; make changes there",
            self.base
        ))
    }

    fn refuse<T: Send + 'static>(&self, what: &str) -> StoreFuture<'static, T> {
        futures::future::ready(Err(self.read_only(what))).boxed()
    }
}

impl SchemaStore for RemoteStore {
    fn intern_schema(&self, _schema: NewSchema) -> StoreFuture<'_, u32> {
        self.refuse("register a schema")
    }

    fn schema(&self, id: u32) -> StoreFuture<'_, Option<StoredSchema>> {
        async move {
            let id_text = id.to_string();
            let body: Option<SchemaBody> = self
                .get(self.url_for(&["schemas", "ids", &id_text], false))
                .await?;
            Ok(body.map(|b| StoredSchema {
                id,
                schema_type: b.schema_type.unwrap_or_else(|| PROTOBUF.to_owned()),
                // The remote registry keeps the canonical form to itself;
                // reads only need the text.
                canonical: b.schema.clone(),
                schema: b.schema,
                references: b.references,
            }))
        }
        .boxed()
    }

    fn subjects(&self) -> StoreFuture<'_, Vec<String>> {
        async move {
            let mut subjects: Vec<String> = self
                .get(self.url_for(&["subjects"], true))
                .await?
                .unwrap_or_default();
            subjects.sort();
            Ok(subjects)
        }
        .boxed()
    }

    fn versions(&self, subject: String) -> StoreFuture<'_, Vec<SubjectVersion>> {
        async move {
            let all: Vec<i32> = self
                .get(self.url_for(&["subjects", &subject, "versions"], true))
                .await?
                .unwrap_or_default();
            if all.is_empty() {
                return Ok(Vec::new());
            }
            let live: Vec<i32> = self
                .get(self.url_for(&["subjects", &subject, "versions"], false))
                .await?
                .unwrap_or_default();
            let mut rows = Vec::with_capacity(all.len());
            for version in all {
                // A version removed between the two calls is skipped.
                let Some(schema_id) = self.version_id(&subject, version).await? else {
                    continue;
                };
                rows.push(SubjectVersion {
                    subject: subject.clone(),
                    version,
                    schema_id,
                    deleted: !live.contains(&version),
                });
            }
            rows.sort_by_key(|r| r.version);
            Ok(rows)
        }
        .boxed()
    }

    fn versions_by_schema(&self, id: u32) -> StoreFuture<'_, Vec<SubjectVersion>> {
        async move {
            let id_text = id.to_string();
            let path = ["schemas", "ids", id_text.as_str(), "versions"];
            let all: Vec<SubjectVersionPair> = self
                .get(self.url_for(&path, true))
                .await?
                .unwrap_or_default();
            if all.is_empty() {
                return Ok(Vec::new());
            }
            let live: Vec<SubjectVersionPair> = self
                .get(self.url_for(&path, false))
                .await?
                .unwrap_or_default();
            let mut rows: Vec<SubjectVersion> = all
                .into_iter()
                .map(|p| SubjectVersion {
                    deleted: !live
                        .iter()
                        .any(|l| l.subject == p.subject && l.version == p.version),
                    subject: p.subject,
                    version: p.version,
                    schema_id: id,
                })
                .collect();
            rows.sort_by(|a, b| (&a.subject, a.version).cmp(&(&b.subject, b.version)));
            Ok(rows)
        }
        .boxed()
    }

    fn add_version(&self, _version: SubjectVersion) -> StoreFuture<'_, ()> {
        self.refuse("add a subject version")
    }

    fn set_deleted(&self, _subject: String, _version: i32, _deleted: bool) -> StoreFuture<'_, ()> {
        self.refuse("delete a subject version")
    }

    fn remove_version(&self, _subject: String, _version: i32) -> StoreFuture<'_, ()> {
        self.refuse("delete a subject version")
    }

    fn setting(
        &self,
        kind: SettingKind,
        subject: Option<String>,
    ) -> StoreFuture<'_, Option<String>> {
        async move {
            let (root, field) = match kind {
                SettingKind::Compatibility => ("config", "compatibilityLevel"),
                SettingKind::Mode => ("mode", "mode"),
            };
            let url = match &subject {
                Some(s) => self.url_for(&[root, s], false),
                None => self.url_for(&[root], false),
            };
            let body: Option<serde_json::Value> = self.get(url).await?;
            Ok(body.and_then(|b| b.get(field).and_then(|v| v.as_str()).map(str::to_owned)))
        }
        .boxed()
    }

    fn set_setting(
        &self,
        _kind: SettingKind,
        _subject: Option<String>,
        _value: Option<String>,
    ) -> StoreFuture<'_, ()> {
        self.refuse("change a setting")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{MemoryStore, Registry, SchemaSubmission, VersionSpec};

    /// Serves a registry over a memory store on a loopback port.
    async fn serve(registry: &Registry) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = registry.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (format!("http://{addr}/"), task)
    }

    fn submission(schema: &str) -> SchemaSubmission {
        SchemaSubmission {
            schema: schema.to_owned(),
            schema_type: Some(PROTOBUF.to_owned()),
            references: Vec::new(),
        }
    }

    #[tokio::test]
    async fn reads_what_the_remote_registry_holds() {
        let local = Registry::new(Arc::new(MemoryStore::new()));
        let subject = "dir/orders-value";
        let v1 = "syntax = \"proto3\"; package t; message A { string x = 1; }";
        let v2 = "syntax = \"proto3\"; package t; message A { string x = 1; int32 y = 2; }";
        let (id1, _) = local
            .register(subject, &submission(v1), false)
            .await
            .unwrap();
        let (id2, _) = local
            .register(subject, &submission(v2), false)
            .await
            .unwrap();
        local
            .delete_version(subject, VersionSpec::Number(1), false)
            .await
            .unwrap();
        let (url, server) = serve(&local).await;

        let store = RemoteStore::new(&url).unwrap();
        let rows = store.versions(subject.to_owned()).await.unwrap();
        let got: Vec<(i32, u32, bool)> = rows
            .iter()
            .map(|r| (r.version, r.schema_id, r.deleted))
            .collect();
        assert_eq!(got, vec![(1, id1, true), (2, id2, false)]);
        assert!(store.versions("missing".into()).await.unwrap().is_empty());
        assert_eq!(store.schema(id2).await.unwrap().unwrap().schema, v2);
        assert!(store.schema(999).await.unwrap().is_none());
        let by_schema = store.versions_by_schema(id1).await.unwrap();
        assert_eq!(by_schema.len(), 1);
        assert!(by_schema[0].deleted);
        assert_eq!(store.subjects().await.unwrap(), vec![subject.to_owned()]);

        // The registry API over it: the latest live version, compiled.
        let remote = Registry::new(Arc::new(store));
        let latest = remote.latest_for_subject(subject).await.unwrap();
        assert_eq!((latest.version, latest.id), (2, id2));
        let err = remote
            .register("other", &submission(v1), false)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::OperationNotPermitted(_)),
            "{err}"
        );
        server.abort();

        // A registry that cannot be reached is a store error, not "missing".
        let gone = RemoteStore::new(&url).unwrap();
        assert!(matches!(
            gone.versions(subject.to_owned()).await,
            Err(RegistryError::Store(_))
        ));
    }

    #[test]
    fn refuses_urls_that_are_not_http() {
        assert!(RemoteStore::new("not a url").is_err());
        assert!(RemoteStore::new("ftp://example.com").is_err());
        assert!(RemoteStore::new("http://127.0.0.1:8081").is_ok());
    }
}
