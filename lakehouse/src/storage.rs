//! Iceberg file IO over `object_store`, so topic tables can live in any
//! store with an S3 API (AWS S3, MinIO, R2, Ceph, ...).
//!
//! [`ObjectStoreConfig`] is the one place an S3 (or local) store is built;
//! the broker builds its segment store from the same config. On top of it,
//! [`ObjectStorage`] implements Iceberg's [`Storage`] trait and
//! [`ObjectStorageFactory`] hands it to a [`FileIO`]:
//!
//! ```text
//!   ObjectStoreConfig { url: "s3://bucket/prefix", .. }
//!         │ build()                        │ warehouse()
//!         ▼                                ▼
//!   Arc<dyn ObjectStore> ◀── ObjectStorage ── "s3://bucket/prefix/warehouse"
//!   (rooted at the bucket)      │              (table locations live below)
//!                               ▼
//!               FileIO (ObjectStorageFactory)
//! ```
//!
//! Iceberg passes full locations (`s3://bucket/prefix/warehouse/ns/t/...`);
//! they become keys relative to the store's root, and a location in any
//! other bucket or scheme is refused rather than silently written elsewhere.
//!
//! Guarantees relied on: a finished write is visible whole or not at all (a
//! single PUT, or a multipart upload that appears only once completed), and
//! a read after a successful write sees it (S3 is strongly consistent).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage,
    StorageConfig, StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayloadMut, RetryConfig,
    WriteMultipart,
};
use serde::{Deserialize, Serialize};

/// Size of one multipart part, and of the largest file sent as a single PUT.
/// S3 needs parts of at least 5 MiB (all but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts of one file uploading at once; bounds a writer's memory to about
/// `(MAX_PARTS_IN_FLIGHT + 1) * PART_SIZE`.
const MAX_PARTS_IN_FLIGHT: usize = 4;

/// Time allowed to open a connection to the store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed for one request, body included. A request moves at most one
/// part or one Parquet column-chunk range, and timeouts are retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Retries with exponential backoff (100 ms doubling to 15 s), for at most
/// 3 minutes from the first attempt: long enough to ride out throttling
/// (`SlowDown`) and a store restart, short enough that signed requests do
/// not outlive their credentials.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(3 * 60),
    }
}

/// Why an object store could not be built from an [`ObjectStoreConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreConfigError {
    /// The URL is neither `s3://bucket[/prefix]` nor `file:///absolute/dir`.
    #[error("unsupported object store url `{url}`: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    /// The directory of a `file://` store could not be created.
    #[error("cannot create object store directory {dir}: {source}")]
    CreateDir { dir: String, source: std::io::Error },
    /// `object_store` rejected the settings.
    #[error("cannot build object store for {url}: {source}")]
    Build {
        url: String,
        source: object_store::Error,
    },
}

/// Where and how to reach an object store.
///
/// `url` is `s3://bucket[/prefix]` (also `s3a://`) for an S3 API store, or
/// `file:///absolute/dir` for a directory on local disk, which behaves the
/// same way and is what tests use.
///
/// S3 settings come first from the standard `AWS_*` environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, web identity, ...); a field set here
/// overrides its variable.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectStoreConfig {
    /// `s3://bucket[/prefix]` or `file:///absolute/dir`.
    pub url: String,
    /// Endpoint of a non-AWS store, e.g. `http://localhost:9000` for MinIO.
    pub endpoint: Option<String>,
    /// Region; stores other than AWS usually accept any value.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Allow plain `http://` endpoints. `false` leaves `AWS_ALLOW_HTTP` (off
    /// by default) in charge.
    pub allow_http: bool,
    /// Address the bucket as `bucket.endpoint` instead of `endpoint/bucket`.
    /// `false` leaves `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` (off by default) in
    /// charge; path style is what MinIO and most self-hosted stores want.
    pub virtual_hosted_style: bool,
}

// Written out so that secrets never reach logs.
impl fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("ObjectStoreConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

/// The root a built store addresses keys from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Root {
    /// Keys are relative to the bucket.
    S3 { bucket: String },
    /// Keys are relative to this absolute directory (no trailing `/`; empty
    /// for the filesystem root).
    Local { dir: String },
}

/// A parsed [`ObjectStoreConfig::url`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoreUrl {
    root: Root,
    /// Where `url` points below the root (`""` when it is the root).
    prefix: String,
}

impl ObjectStoreConfig {
    /// A config for `url` with every other setting from the environment.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The Iceberg warehouse below `url`: `{url}/warehouse`. Table
    /// locations are created under it.
    pub fn warehouse(&self) -> String {
        format!("{}/warehouse", self.url.trim_end_matches('/'))
    }

    /// Where `url` points inside the store [`build`](Self::build) returns:
    /// the key prefix after the bucket for S3, empty for `file://` (that
    /// store is rooted at the directory itself). Wrap the store in an
    /// `object_store::prefix::PrefixStore` with it to address keys relative
    /// to `url`.
    pub fn prefix(&self) -> std::result::Result<Path, ObjectStoreConfigError> {
        let parsed = self.parse()?;
        Path::parse(&parsed.prefix)
            .map_err(|_| self.invalid("the path has an empty or `..` segment"))
    }

    /// Builds the store: rooted at the bucket for `s3://`, at the directory
    /// (created if missing) for `file://`.
    ///
    /// S3 requests are retried with backoff and bounded by timeouts (see the
    /// constants of this module); building does no network I/O, so a wrong
    /// endpoint or credential shows on first use.
    pub fn build(&self) -> std::result::Result<Arc<dyn ObjectStore>, ObjectStoreConfigError> {
        match self.parse()?.root {
            Root::S3 { bucket } => self.build_s3(&bucket),
            Root::Local { dir } => {
                let dir = if dir.is_empty() { "/".to_string() } else { dir };
                std::fs::create_dir_all(&dir).map_err(|source| {
                    ObjectStoreConfigError::CreateDir {
                        dir: dir.clone(),
                        source,
                    }
                })?;
                let store =
                    LocalFileSystem::new_with_prefix(&dir).map_err(|e| self.build_error(e))?;
                Ok(Arc::new(store))
            }
        }
    }

    fn build_s3(
        &self,
        bucket: &str,
    ) -> std::result::Result<Arc<dyn ObjectStore>, ObjectStoreConfigError> {
        let client = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let mut builder = AmazonS3Builder::new()
            .with_retry(retry_config())
            .with_client_options(client);
        // The same walk as `AmazonS3Builder::from_env`, but on top of our
        // client defaults: `from_env` starts from a fresh builder, and
        // replacing its client options afterwards would drop settings such
        // as `AWS_ALLOW_HTTP` or `AWS_PROXY_URL` taken from the environment.
        for (key, value) in std::env::vars_os() {
            let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
                continue;
            };
            if !key.starts_with("AWS_") {
                continue;
            }
            let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else {
                continue;
            };
            // A session token belongs to the environment's key, not ours.
            if key == AmazonS3ConfigKey::Token && self.access_key_id.is_some() {
                continue;
            }
            builder = builder.with_config(key, value);
        }

        builder = builder.with_bucket_name(bucket);
        if let Some(endpoint) = &self.endpoint {
            // `AWS_ENDPOINT_URL_S3` would otherwise win over `endpoint`.
            builder = builder
                .with_endpoint(endpoint)
                .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint);
        }
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &self.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &self.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token);
        }
        if self.allow_http {
            builder = builder.with_allow_http(true);
        }
        if self.virtual_hosted_style {
            builder = builder.with_virtual_hosted_style_request(true);
        }
        let store = builder.build().map_err(|e| self.build_error(e))?;
        Ok(Arc::new(store))
    }

    fn parse(&self) -> std::result::Result<StoreUrl, ObjectStoreConfigError> {
        let url = self.url.as_str();
        if let Some(rest) = url
            .strip_prefix("s3://")
            .or_else(|| url.strip_prefix("s3a://"))
        {
            let rest = rest.trim_end_matches('/');
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(self.invalid("no bucket after `s3://`"));
            }
            return Ok(StoreUrl {
                root: Root::S3 {
                    bucket: bucket.to_string(),
                },
                prefix: prefix.to_string(),
            });
        }
        if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(self.invalid("a file url needs an absolute path (`file:///dir`)"));
            }
            return Ok(StoreUrl {
                root: Root::Local {
                    dir: dir.trim_end_matches('/').to_string(),
                },
                prefix: String::new(),
            });
        }
        Err(self.invalid("expected `s3://bucket[/prefix]` or `file:///dir`"))
    }

    fn invalid(&self, reason: &'static str) -> ObjectStoreConfigError {
        ObjectStoreConfigError::InvalidUrl {
            url: self.url.clone(),
            reason,
        }
    }

    fn build_error(&self, source: object_store::Error) -> ObjectStoreConfigError {
        ObjectStoreConfigError::Build {
            url: self.url.clone(),
            source,
        }
    }
}

/// Iceberg [`Storage`] over an [`ObjectStore`].
///
/// Serializes as its [`ObjectStoreConfig`] (secrets included, as they are
/// needed to rebuild it); deserializing builds the store again.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "ObjectStoreConfig", into = "ObjectStoreConfig")]
pub struct ObjectStorage {
    config: ObjectStoreConfig,
    root: Root,
    store: Arc<dyn ObjectStore>,
    /// [`PART_SIZE`]; smaller in tests to exercise multipart uploads.
    part_size: usize,
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("config", &self.config)
            .field("store", &format_args!("{}", self.store))
            .finish()
    }
}

impl TryFrom<ObjectStoreConfig> for ObjectStorage {
    type Error = ObjectStoreConfigError;

    fn try_from(config: ObjectStoreConfig) -> std::result::Result<Self, Self::Error> {
        Self::new(config)
    }
}

impl From<ObjectStorage> for ObjectStoreConfig {
    fn from(storage: ObjectStorage) -> Self {
        storage.config
    }
}

impl ObjectStorage {
    /// Builds the store `config` describes.
    pub fn new(config: ObjectStoreConfig) -> std::result::Result<Self, ObjectStoreConfigError> {
        let root = config.parse()?.root;
        let store = config.build()?;
        Ok(Self {
            config,
            root,
            store,
            part_size: PART_SIZE,
        })
    }

    /// The underlying store, to share its connections with other users.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn config(&self) -> &ObjectStoreConfig {
        &self.config
    }

    fn path(&self, location: &str) -> Result<Path> {
        relative_path(&self.root, location)
    }

    fn file_read(&self, location: &str) -> Result<ObjectFileRead> {
        Ok(ObjectFileRead {
            store: Arc::clone(&self.store),
            path: self.path(location)?,
            location: location.to_string(),
        })
    }

    fn file_write(&self, location: &str) -> Result<ObjectFileWrite> {
        Ok(ObjectFileWrite {
            store: Arc::clone(&self.store),
            path: self.path(location)?,
            location: location.to_string(),
            part_size: self.part_size,
            state: WriteState::Buffered(PutPayloadMut::new()),
            written: 0,
        })
    }
}

/// The key of `location` below `root`, or an error if it lies elsewhere.
fn relative_path(root: &Root, location: &str) -> Result<Path> {
    let rest = match root {
        Root::S3 { bucket } => location
            .strip_prefix("s3://")
            .or_else(|| location.strip_prefix("s3a://"))
            .and_then(|rest| rest.strip_prefix(bucket.as_str())),
        Root::Local { dir } => location
            .strip_prefix("file://")
            .and_then(|rest| rest.strip_prefix(dir.as_str())),
    };
    // `s3://bucket2/x` starts with `s3://bucket` too: the root must end at
    // a `/` or at the end of the location.
    let Some(rest) = rest.filter(|rest| rest.is_empty() || rest.starts_with('/')) else {
        let root = match root {
            Root::S3 { bucket } => format!("s3://{bucket}"),
            Root::Local { dir } => format!("file://{dir}"),
        };
        return Err(Error::new(
            ErrorKind::DataInvalid,
            format!("location {location} is outside the object store at {root}"),
        ));
    };
    Path::parse(rest).map_err(|e| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("location {location} is not a valid object key"),
        )
        .with_source(e)
    })
}

/// Counts one request to the store (the broker's `/metrics` shows them as
/// `sluice_object_store_requests_total`, beside those of the segments).
fn request(op: &'static str) {
    metrics::counter!("sluice_object_store_requests_total", "op" => op, "data" => "table")
        .increment(1);
}

fn store_error(action: &str, location: &str, e: object_store::Error) -> Error {
    if !is_not_found(&e) {
        metrics::counter!("sluice_object_store_errors_total", "data" => "table").increment(1);
    }
    Error::new(ErrorKind::Unexpected, format!("cannot {action} {location}")).with_source(e)
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStorage {
    async fn exists(&self, location: &str) -> Result<bool> {
        request("head");
        match self.store.head(&self.path(location)?).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(store_error("look up", location, e)),
        }
    }

    async fn metadata(&self, location: &str) -> Result<FileMetadata> {
        request("head");
        let meta = self
            .store
            .head(&self.path(location)?)
            .await
            .map_err(|e| store_error("look up", location, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, location: &str) -> Result<Bytes> {
        let path = self.path(location)?;
        request("get");
        let read = async { self.store.get(&path).await?.bytes().await };
        read.await.map_err(|e| store_error("read", location, e))
    }

    async fn reader(&self, location: &str) -> Result<Box<dyn FileRead>> {
        // Lazy like a remote file handle: a missing file shows on the first
        // read, which saves a HEAD per opened file.
        Ok(Box::new(self.file_read(location)?))
    }

    async fn write(&self, location: &str, bs: Bytes) -> Result<()> {
        // The writer sends a small file as one PUT and a large one as a
        // multipart upload.
        let mut writer = self.file_write(location)?;
        writer.write(bs).await?;
        writer.close().await
    }

    async fn writer(&self, location: &str) -> Result<Box<dyn FileWrite>> {
        Ok(Box::new(self.file_write(location)?))
    }

    async fn delete(&self, location: &str) -> Result<()> {
        request("delete");
        match self.store.delete(&self.path(location)?).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(store_error("delete", location, e)),
        }
    }

    async fn delete_prefix(&self, location: &str) -> Result<()> {
        let prefix = self.path(location)?;
        if prefix.is_root() {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!("refusing to delete everything in the object store at {location}"),
            ));
        }
        request("list");
        // Listing is by whole segments: `ns/t` covers `ns/t/x`, not `ns/t2`.
        let objects = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(objects);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(store_error("delete files under", location, e)),
            }
        }
        Ok(())
    }

    async fn delete_stream(&self, locations: BoxStream<'static, String>) -> Result<()> {
        let root = self.root.clone();
        let paths = locations
            .map(move |location| {
                relative_path(&root, &location).map_err(|e| object_store::Error::Generic {
                    store: "iceberg",
                    source: Box::new(e),
                })
            })
            .boxed();
        request("delete");
        // Batched by the store (S3 deletes up to 1000 keys per request).
        let mut deleted = self.store.delete_stream(paths);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(
                        Error::new(ErrorKind::Unexpected, "cannot delete files").with_source(e)
                    );
                }
            }
        }
        Ok(())
    }

    fn new_input(&self, location: &str) -> Result<InputFile> {
        self.path(location)?;
        Ok(InputFile::new(Arc::new(self.clone()), location.to_string()))
    }

    fn new_output(&self, location: &str) -> Result<OutputFile> {
        self.path(location)?;
        Ok(OutputFile::new(
            Arc::new(self.clone()),
            location.to_string(),
        ))
    }
}

/// Ranged reads of one object.
struct ObjectFileRead {
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: String,
}

#[async_trait]
impl FileRead for ObjectFileRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        // A store refuses an empty range; there is nothing to fetch anyway.
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        request("get");
        self.store
            .get_range(&self.path, range.clone())
            .await
            .map_err(|e| {
                store_error(
                    &format!("read bytes {}..{} of", range.start, range.end),
                    &self.location,
                    e,
                )
            })
    }
}

/// Writes one object.
///
/// Bytes are buffered up to one part (8 MiB). A file that ends within it
/// (metadata, manifests, small Parquet files) is sent with one PUT on
/// `close`; a larger one switches to a multipart upload whose parts go out
/// in the background while the caller keeps writing. Buffering a whole
/// 64 MiB Parquet file for one PUT would hold it all in memory per writer
/// and make a failure late in the transfer resend everything; parts bound
/// the memory and are retried one by one. Either way the object becomes
/// visible only when `close` succeeds.
struct ObjectFileWrite {
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: String,
    part_size: usize,
    state: WriteState,
    /// Bytes written, to count the parts a multipart upload sends.
    written: u64,
}

enum WriteState {
    /// Less than one part written so far.
    Buffered(PutPayloadMut),
    /// Parts uploading.
    Multipart(WriteMultipart),
    /// Closed, or failed (a failed upload is aborted).
    Done,
}

impl ObjectFileWrite {
    fn done_error(&self) -> Error {
        Error::new(
            ErrorKind::DataInvalid,
            format!(
                "writer for {} is closed or an earlier write failed",
                self.location
            ),
        )
    }
}

async fn abort_upload(upload: WriteMultipart, location: &str) {
    if let Err(e) = upload.abort().await {
        tracing::warn!(%location, error = %e, "cannot abort multipart upload");
    }
}

#[async_trait]
impl FileWrite for ObjectFileWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.written += bs.len() as u64;
        // A failure below leaves the state `Done`.
        self.state = match std::mem::replace(&mut self.state, WriteState::Done) {
            WriteState::Done => return Err(self.done_error()),
            WriteState::Buffered(mut buffer)
                if buffer.content_length() + bs.len() < self.part_size =>
            {
                buffer.push(bs);
                WriteState::Buffered(buffer)
            }
            WriteState::Buffered(buffer) => {
                let upload = self
                    .store
                    .put_multipart(&self.path)
                    .await
                    .map_err(|e| store_error("start upload of", &self.location, e))?;
                let mut parts = WriteMultipart::new_with_chunk_size(upload, self.part_size);
                for chunk in buffer.freeze() {
                    parts.put(chunk);
                }
                parts.put(bs);
                WriteState::Multipart(parts)
            }
            WriteState::Multipart(mut parts) => {
                // Back pressure: wait for a part to finish before buffering more.
                if let Err(e) = parts.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                    abort_upload(parts, &self.location).await;
                    return Err(store_error("upload", &self.location, e));
                }
                parts.put(bs);
                WriteState::Multipart(parts)
            }
        };
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.state, WriteState::Done) {
            WriteState::Done => Err(self.done_error()),
            WriteState::Buffered(buffer) => {
                request("put");
                self.store
                    .put(&self.path, buffer.freeze())
                    .await
                    .map(drop)
                    .map_err(|e| store_error("write", &self.location, e))
            }
            WriteState::Multipart(mut parts) => {
                // Create, one request per part, complete.
                let part_count = self.written.div_ceil(self.part_size as u64);
                metrics::counter!("sluice_object_store_requests_total", "op" => "put", "data" => "table")
                    .increment(part_count + 2);
                // Wait for the parts in flight first: `finish` does not abort
                // the upload when one of them failed.
                if let Err(e) = parts.wait_for_capacity(0).await {
                    abort_upload(parts, &self.location).await;
                    return Err(store_error("upload", &self.location, e));
                }
                // `finish` aborts the upload itself if completing fails.
                parts
                    .finish()
                    .await
                    .map(drop)
                    .map_err(|e| store_error("complete upload of", &self.location, e))
            }
        }
    }
}

impl Drop for ObjectFileWrite {
    fn drop(&mut self) {
        // Dropped before `close` (an error upstream): nothing becomes
        // visible, but uploaded parts are kept (and billed) until the upload
        // is aborted.
        if let WriteState::Multipart(parts) = std::mem::replace(&mut self.state, WriteState::Done)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let location = self.location.clone();
            runtime.spawn(async move { abort_upload(parts, &location).await });
        }
    }
}

/// Makes [`ObjectStorage`] for a [`FileIO`]. The storage is built when the
/// factory is, so a bad config fails at startup; the [`StorageConfig`]
/// properties a FileIO passes are not used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStorageFactory {
    storage: ObjectStorage,
}

impl ObjectStorageFactory {
    pub fn new(storage: ObjectStorage) -> Self {
        Self { storage }
    }
}

#[typetag::serde]
impl StorageFactory for ObjectStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.storage.clone()))
    }
}

/// A [`FileIO`] over the store `config` describes; use it with
/// [`ObjectStoreConfig::warehouse`] as the catalog's warehouse.
pub fn object_file_io(config: &ObjectStoreConfig) -> Result<FileIO> {
    let storage = ObjectStorage::new(config.clone()).map_err(|e| {
        Error::new(ErrorKind::DataInvalid, "invalid object store configuration").with_source(e)
    })?;
    let factory = ObjectStorageFactory::new(storage);
    Ok(FileIOBuilder::new(Arc::new(factory)).build())
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;

    /// A `file://` store in a temp dir, and the URL of that dir.
    fn local_storage(dir: &tempfile::TempDir) -> (ObjectStorage, String) {
        let url = format!("file://{}", dir.path().display());
        let storage = ObjectStorage::new(ObjectStoreConfig::new(&url)).unwrap();
        (storage, url)
    }

    /// An S3 store that is never contacted: only locations are checked.
    fn s3_storage(url: &str) -> ObjectStorage {
        ObjectStorage::new(ObjectStoreConfig {
            region: Some("us-east-1".into()),
            access_key_id: Some("key".into()),
            secret_access_key: Some("secret".into()),
            ..ObjectStoreConfig::new(url)
        })
        .unwrap()
    }

    async fn list(storage: &ObjectStorage) -> Vec<String> {
        let mut keys: Vec<String> = storage
            .store()
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    #[test]
    fn parses_urls() {
        let config = ObjectStoreConfig::new("s3://bucket/some/prefix/");
        assert_eq!(
            config.parse().unwrap(),
            StoreUrl {
                root: Root::S3 {
                    bucket: "bucket".into()
                },
                prefix: "some/prefix".into(),
            }
        );
        assert_eq!(config.prefix().unwrap(), Path::from("some/prefix"));
        assert_eq!(config.warehouse(), "s3://bucket/some/prefix/warehouse");

        let bare = ObjectStoreConfig::new("s3a://bucket");
        assert_eq!(bare.prefix().unwrap(), Path::ROOT);
        assert_eq!(bare.warehouse(), "s3a://bucket/warehouse");

        let local = ObjectStoreConfig::new("file:///data/lake");
        assert_eq!(
            local.parse().unwrap().root,
            Root::Local {
                dir: "/data/lake".into()
            }
        );
        assert_eq!(local.prefix().unwrap(), Path::ROOT);

        for url in [
            "s3://",
            "s3:///prefix",
            "gs://bucket",
            "/data",
            "file://data",
            "",
        ] {
            let err = ObjectStoreConfig::new(url).parse().unwrap_err();
            assert!(
                matches!(err, ObjectStoreConfigError::InvalidUrl { .. }),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let config = ObjectStoreConfig {
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI".into()),
            session_token: Some("FwoGZXIvYXdz".into()),
            ..ObjectStoreConfig::new("s3://bucket")
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("wJalrXUtnFEMI"));
        assert!(!shown.contains("FwoGZXIvYXdz"));
        let storage = ObjectStorage::new(ObjectStoreConfig {
            region: Some("us-east-1".into()),
            ..config
        })
        .unwrap();
        assert!(!format!("{storage:?}").contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn maps_locations_to_keys() {
        let storage = s3_storage("s3://bucket/prefix");
        let key = |location: &str| storage.path(location).map(|p| p.to_string());
        assert_eq!(
            key("s3://bucket/prefix/warehouse/kafka/t/metadata/v1.json").unwrap(),
            "prefix/warehouse/kafka/t/metadata/v1.json"
        );
        assert_eq!(key("s3a://bucket/x").unwrap(), "x");
        assert_eq!(key("s3://bucket").unwrap(), "");
        for outside in [
            "s3://other/prefix/x",
            "s3://bucket2/x",
            "gs://bucket/x",
            "file:///bucket/x",
            "bucket/x",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
        ] {
            let err = key(outside).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::DataInvalid, "{outside}");
        }
        assert!(storage.new_input("s3://other/x").is_err());
        assert!(storage.new_output("s3://other/x").is_err());
    }

    #[tokio::test]
    async fn write_read_exists_metadata_delete() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, url) = local_storage(&dir);
        let location = format!("{url}/ns/t/data/a.parquet");

        assert!(!storage.exists(&location).await.unwrap());
        storage
            .write(&location, Bytes::from_static(b"hello, lakehouse"))
            .await
            .unwrap();
        assert!(dir.path().join("ns/t/data/a.parquet").is_file());
        assert!(storage.exists(&location).await.unwrap());
        assert_eq!(storage.metadata(&location).await.unwrap().size, 16);
        assert_eq!(
            storage.read(&location).await.unwrap(),
            Bytes::from_static(b"hello, lakehouse")
        );

        let reader = storage.reader(&location).await.unwrap();
        assert_eq!(reader.read(7..16).await.unwrap(), "lakehouse");
        assert_eq!(reader.read(0..5).await.unwrap(), "hello");
        assert!(reader.read(3..3).await.unwrap().is_empty());

        storage.delete(&location).await.unwrap();
        assert!(!storage.exists(&location).await.unwrap());
        // Deleting what is not there is not an error.
        storage.delete(&location).await.unwrap();

        let missing = format!("{url}/ns/t/data/missing.parquet");
        assert!(storage.metadata(&missing).await.is_err());
        assert!(storage.read(&missing).await.is_err());
        let reader = storage.reader(&missing).await.unwrap();
        assert!(reader.read(0..1).await.is_err());
    }

    #[tokio::test]
    async fn writer_buffers_small_files_and_uploads_large_ones_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, url) = local_storage(&dir);
        storage.part_size = 10;

        let small = format!("{url}/small");
        let mut writer = storage.writer(&small).await.unwrap();
        writer.write(Bytes::from_static(b"abc")).await.unwrap();
        writer.write(Bytes::from_static(b"def")).await.unwrap();
        assert!(
            !storage.exists(&small).await.unwrap(),
            "visible before close"
        );
        writer.close().await.unwrap();
        assert_eq!(storage.read(&small).await.unwrap(), "abcdef");

        let large = format!("{url}/large");
        let content: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut writer = storage.writer(&large).await.unwrap();
        for chunk in content.chunks(7) {
            writer.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        assert!(
            !storage.exists(&large).await.unwrap(),
            "visible before close"
        );
        writer.close().await.unwrap();
        assert_eq!(storage.read(&large).await.unwrap(), content);
        let reader = storage.reader(&large).await.unwrap();
        assert_eq!(reader.read(250..260).await.unwrap(), &content[250..260]);

        // A single write larger than a part goes through the same path.
        let one_shot = format!("{url}/one-shot");
        storage
            .write(&one_shot, Bytes::from(content.clone()))
            .await
            .unwrap();
        assert_eq!(storage.read(&one_shot).await.unwrap(), content);

        assert_eq!(list(&storage).await, ["large", "one-shot", "small"]);
    }

    #[tokio::test]
    async fn writer_refuses_use_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, url) = local_storage(&dir);
        let mut writer = storage.writer(&format!("{url}/f")).await.unwrap();
        writer.write(Bytes::from_static(b"x")).await.unwrap();
        writer.close().await.unwrap();
        assert!(writer.close().await.is_err());
        assert!(writer.write(Bytes::from_static(b"y")).await.is_err());
    }

    #[tokio::test]
    async fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, url) = local_storage(&dir);
        let location = format!("{url}/empty");
        let mut writer = storage.writer(&location).await.unwrap();
        writer.close().await.unwrap();
        assert_eq!(storage.metadata(&location).await.unwrap().size, 0);
        assert!(storage.read(&location).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn delete_prefix_removes_whole_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, url) = local_storage(&dir);
        for key in [
            "ns/t/metadata/v1.json",
            "ns/t/data/a/b.parquet",
            "ns/t2/x",
            "ns/tx",
        ] {
            storage
                .write(&format!("{url}/{key}"), Bytes::from_static(b"1"))
                .await
                .unwrap();
        }

        storage.delete_prefix(&format!("{url}/ns/t")).await.unwrap();
        assert_eq!(list(&storage).await, ["ns/t2/x", "ns/tx"]);
        // Again, and a prefix with nothing under it.
        storage
            .delete_prefix(&format!("{url}/ns/t/"))
            .await
            .unwrap();
        storage.delete_prefix(&format!("{url}/none")).await.unwrap();
        // Never the whole store.
        assert!(storage.delete_prefix(&url).await.is_err());
        assert!(storage.delete_prefix("file:///elsewhere").await.is_err());
        assert_eq!(list(&storage).await, ["ns/t2/x", "ns/tx"]);
    }

    #[tokio::test]
    async fn delete_stream_deletes_each() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, url) = local_storage(&dir);
        for key in ["a", "b", "c"] {
            storage
                .write(&format!("{url}/{key}"), Bytes::from_static(b"1"))
                .await
                .unwrap();
        }
        let locations = vec![
            format!("{url}/a"),
            format!("{url}/c"),
            format!("{url}/gone"),
        ];
        storage
            .delete_stream(stream::iter(locations).boxed())
            .await
            .unwrap();
        assert_eq!(list(&storage).await, ["b"]);

        storage
            .delete_stream(stream::iter(Vec::<String>::new()).boxed())
            .await
            .unwrap();
        let outside = vec!["s3://bucket/b".to_string()];
        assert!(
            storage
                .delete_stream(stream::iter(outside).boxed())
                .await
                .is_err()
        );
        assert_eq!(list(&storage).await, ["b"]);
    }

    #[tokio::test]
    async fn round_trips_through_serde() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, url) = local_storage(&dir);
        let location = format!("{url}/f");
        storage
            .write(&location, Bytes::from_static(b"kept"))
            .await
            .unwrap();

        let storage: Box<dyn Storage> = Box::new(storage);
        let json = serde_json::to_string(&storage).unwrap();
        assert!(json.contains(r#""type":"ObjectStorage""#), "{json}");
        let back: Box<dyn Storage> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.read(&location).await.unwrap(), "kept");

        let factory: Box<dyn StorageFactory> = Box::new(ObjectStorageFactory::new(
            ObjectStorage::new(ObjectStoreConfig::new(&url)).unwrap(),
        ));
        let json = serde_json::to_string(&factory).unwrap();
        let back: Box<dyn StorageFactory> = serde_json::from_str(&json).unwrap();
        let rebuilt = back.build(&StorageConfig::new()).unwrap();
        assert_eq!(rebuilt.read(&location).await.unwrap(), "kept");
    }

    #[tokio::test]
    async fn file_io_writes_and_reads_under_the_warehouse() {
        let dir = tempfile::tempdir().unwrap();
        let config = ObjectStoreConfig::new(format!("file://{}/lake", dir.path().display()));
        let io = object_file_io(&config).unwrap();
        let location = format!(
            "{}/kafka/t/metadata/00000-x.metadata.json",
            config.warehouse()
        );

        let output = io.new_output(&location).unwrap();
        output.write(Bytes::from_static(b"{}")).await.unwrap();
        assert!(
            dir.path()
                .join("lake/warehouse/kafka/t/metadata/00000-x.metadata.json")
                .is_file()
        );
        assert!(io.exists(&location).await.unwrap());
        let input = io.new_input(&location).unwrap();
        assert_eq!(input.metadata().await.unwrap().size, 2);
        assert_eq!(input.read().await.unwrap(), "{}");

        io.delete_prefix(format!("{}/kafka/t", config.warehouse()))
            .await
            .unwrap();
        assert!(!io.exists(&location).await.unwrap());
        assert!(io.new_input("s3://bucket/x").is_err());

        let bad = ObjectStoreConfig::new("ftp://host/x");
        assert_eq!(
            object_file_io(&bad).unwrap_err().kind(),
            ErrorKind::DataInvalid
        );
    }
}
