//! Where segments live, and the cache of recent segments.
//!
//! A segment is the record batches of one flush (many partitions),
//! addressed by `SegmentLoc { key, base, size }`: bytes `base..base+size` of
//! object `key`. The offset index in the metadata store says which byte range
//! of which segment holds each batch.
//!
//! Two layouts behind one interface:
//! - **Local directory** (embedded mode): flushes are appended to a log file
//!   `segments/<uuid>.log`, rolled at `ROLL_BYTES` and at every start. One
//!   file per flush would cost an inode allocation per flush, which on ext4
//!   was the largest single cost of the produce path.
//! - **Object store** (any `object_store` backend): one immutable object per
//!   flush, `segments/<uuid>.seg`, with `base` 0.
//!
//! Either way the bytes are written before the metadata commit that makes
//! them visible; bytes left behind by a failed or interrupted commit are
//! never referenced and are removed by garbage collection.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn segment_store_error() {
    metrics::counter!("sluice_object_store_errors_total", "data" => "segment").increment(1);
}

/// How long startup waits for the object store to answer its first request.
const STARTUP_PROBE: std::time::Duration = std::time::Duration::from_secs(20);

/// A local log file is closed and a new one started past this size.
const ROLL_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
    #[error("invalid object store URL '{0}': expected file://PATH or s3://BUCKET[/PREFIX]")]
    BadUrl(String),
    #[error("object store: {0}")]
    Config(String),
    #[error("segment I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("segment {key}@{base} is shorter than expected ({got} of {want} bytes)")]
    Short {
        key: String,
        base: u64,
        got: usize,
        want: usize,
    },
}

/// Where one segment's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentLoc {
    pub key: String,
    pub base: u64,
    pub size: u64,
}

struct OpenLog {
    key: String,
    file: File,
    len: u64,
}

enum Backend {
    Local {
        dir: PathBuf,
        /// Only the append path writes; the mutex makes that explicit.
        current: tokio::sync::Mutex<Option<OpenLog>>,
        current_key: std::sync::Mutex<Option<String>>,
    },
    Remote(Arc<dyn ObjectStore>),
}

#[derive(Clone)]
pub struct Segments {
    backend: Arc<Backend>,
    /// Recently written or read segments. Weighted by size.
    cache: moka::future::Cache<SegmentLoc, Bytes>,
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ObjectError + '_ {
    move |source| ObjectError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Segments {
    pub fn open(url: &str, cache_bytes: u64) -> Result<Segments, ObjectError> {
        let Some(path) = url.strip_prefix("file://") else {
            return Err(ObjectError::BadUrl(url.to_string()));
        };
        let dir = PathBuf::from(path);
        std::fs::create_dir_all(dir.join("segments")).map_err(io_err(&dir))?;
        Ok(Self::build(
            Backend::Local {
                dir,
                current: tokio::sync::Mutex::new(None),
                current_key: std::sync::Mutex::new(None),
            },
            cache_bytes,
        ))
    }

    /// Segments in the store `config` names (an S3 bucket and prefix), after
    /// checking that the store answers: a wrong bucket, endpoint or
    /// credential fails here, at startup, not on the first produce.
    pub async fn open_store(
        config: &sluice_lakehouse::storage::ObjectStoreConfig,
        cache_bytes: u64,
    ) -> Result<Segments, ObjectError> {
        let store = config
            .build()
            .map_err(|e| ObjectError::Config(e.to_string()))?;
        let prefix = config
            .prefix()
            .map_err(|e| ObjectError::Config(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            store
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        };
        // A listing, not a HEAD: S3 answers a HEAD in a missing bucket with
        // the same 404 as a missing key.
        let probe = Path::from("segments");
        match tokio::time::timeout(STARTUP_PROBE, store.list_with_delimiter(Some(&probe))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ObjectError::Store(e)),
            Err(_) => {
                return Err(ObjectError::Config(format!(
                    "no answer within {STARTUP_PROBE:?}"
                )));
            }
        }
        Ok(Self::with_store(store, cache_bytes))
    }

    /// Segments in any `object_store` backend, one object per flush.
    pub fn with_store(store: Arc<dyn ObjectStore>, cache_bytes: u64) -> Segments {
        Self::build(Backend::Remote(store), cache_bytes)
    }

    fn build(backend: Backend, cache_bytes: u64) -> Segments {
        let cache = moka::future::Cache::builder()
            .max_capacity(cache_bytes)
            .weigher(|_k: &SegmentLoc, v: &Bytes| v.len().try_into().unwrap_or(u32::MAX))
            .build();
        Segments {
            backend: Arc::new(backend),
            cache,
        }
    }

    /// Stores a segment durably (against process crashes) and caches it.
    pub async fn put(&self, data: Bytes) -> Result<SegmentLoc, ObjectError> {
        let size = data.len() as u64;
        metrics::counter!("sluice_object_store_requests_total", "op" => "put", "data" => "segment")
            .increment(1);
        let loc = match &*self.backend {
            Backend::Remote(store) => {
                let key = format!("segments/{}.seg", uuid::Uuid::new_v4().simple());
                store
                    .put(
                        &Path::from(key.as_str()),
                        PutPayload::from_bytes(data.clone()),
                    )
                    .await
                    .inspect_err(|_| segment_store_error())?;
                SegmentLoc { key, base: 0, size }
            }
            Backend::Local {
                dir,
                current,
                current_key,
            } => {
                let mut guard = current.lock().await;
                let log = guard.take();
                let dir = dir.clone();
                let payload = data.clone();
                let (log, base) =
                    tokio::task::spawn_blocking(move || append_local(&dir, log, &payload))
                        .await
                        .map_err(|e| ObjectError::Io {
                            path: "segment writer".into(),
                            source: std::io::Error::other(e),
                        })??;
                let key = log.key.clone();
                if let Ok(mut k) = current_key.lock() {
                    *k = Some(key.clone());
                }
                *guard = Some(log);
                SegmentLoc { key, base, size }
            }
        };
        self.cache.insert(loc.clone(), data).await;
        Ok(loc)
    }

    /// A whole segment, from the cache or storage.
    pub async fn get(&self, loc: &SegmentLoc) -> Result<Bytes, Arc<ObjectError>> {
        let backend = self.backend.clone();
        let l = loc.clone();
        self.cache
            .try_get_with(loc.clone(), async move {
                metrics::counter!("sluice_object_store_requests_total", "op" => "get", "data" => "segment").increment(1);
                let bytes = match &*backend {
                    Backend::Remote(store) => {
                        store
                            .get_range(&Path::from(l.key.as_str()), l.base..l.base + l.size)
                            .await
                            .inspect_err(|_| segment_store_error())?
                    }
                    Backend::Local { dir, .. } => {
                        let path = dir.join(&l.key);
                        let want = l.size as usize;
                        let base = l.base;
                        tokio::task::spawn_blocking(move || -> Result<Bytes, ObjectError> {
                            let file = File::open(&path).map_err(io_err(&path))?;
                            let mut buf = vec![0u8; want];
                            file.read_exact_at(&mut buf, base).map_err(io_err(&path))?;
                            Ok(Bytes::from(buf))
                        })
                        .await
                        .map_err(|e| ObjectError::Io {
                            path: "segment reader".into(),
                            source: std::io::Error::other(e),
                        })??
                    }
                };
                if bytes.len() as u64 != l.size {
                    return Err(ObjectError::Short {
                        key: l.key.clone(),
                        base: l.base,
                        got: bytes.len(),
                        want: l.size as usize,
                    });
                }
                Ok::<_, ObjectError>(bytes)
            })
            .await
    }

    /// Deletes an object (a whole log file, locally) no segment refers to.
    /// The log file being appended to is never deleted.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match &*self.backend {
            Backend::Remote(store) => match store.delete(&Path::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Backend::Local {
                dir, current_key, ..
            } => {
                if current_key
                    .lock()
                    .map(|k| k.as_deref() == Some(key))
                    .unwrap_or(true)
                {
                    return Ok(());
                }
                match std::fs::remove_file(dir.join(key)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(io_err(&dir.join(key))(e))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Keys of all segment objects with their last-modified time in ms,
    /// except the log file being appended to.
    pub async fn list(&self) -> Result<Vec<(String, i64)>, ObjectError> {
        match &*self.backend {
            Backend::Remote(store) => {
                use futures::TryStreamExt;
                let items: Vec<_> = store
                    .list(Some(&Path::from("segments")))
                    .try_collect()
                    .await?;
                Ok(items
                    .into_iter()
                    .map(|m| (m.location.to_string(), m.last_modified.timestamp_millis()))
                    .collect())
            }
            Backend::Local {
                dir, current_key, ..
            } => {
                let current = current_key.lock().ok().and_then(|k| k.clone());
                let seg_dir = dir.join("segments");
                let mut out = Vec::new();
                for entry in std::fs::read_dir(&seg_dir).map_err(io_err(&seg_dir))? {
                    let entry = entry.map_err(io_err(&seg_dir))?;
                    let key = format!("segments/{}", entry.file_name().to_string_lossy());
                    if Some(&key) == current.as_ref() {
                        continue;
                    }
                    let modified = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_millis() as i64);
                    out.push((key, modified));
                }
                Ok(out)
            }
        }
    }
}

/// Appends `data` to the open log (rolling to a new file when needed) and
/// returns the log and the offset the data starts at.
fn append_local(
    dir: &std::path::Path,
    log: Option<OpenLog>,
    data: &[u8],
) -> Result<(OpenLog, u64), ObjectError> {
    let mut log = match log {
        Some(l) if l.len < ROLL_BYTES => l,
        _ => {
            let key = format!("segments/{}.log", uuid::Uuid::new_v4().simple());
            let path = dir.join(&key);
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            OpenLog { key, file, len: 0 }
        }
    };
    let base = log.len;
    if let Err(e) = log.file.write_all(data) {
        // The file may now hold a partial write; start a fresh one next time.
        return Err(io_err(&dir.join(&log.key))(e));
    }
    log.len += data.len() as u64;
    Ok((log, base))
}

/// Object store for other crates' tests and tools: a local directory as an
/// `object_store`, one object per segment.
pub fn local_object_store(path: &str) -> Result<Arc<dyn ObjectStore>, ObjectError> {
    std::fs::create_dir_all(path).map_err(io_err(std::path::Path::new(path)))?;
    Ok(Arc::new(LocalFileSystem::new_with_prefix(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_log_appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let s = Segments::open(&url, 1024).unwrap();
        let a = s.put(Bytes::from_static(b"hello")).await.unwrap();
        let b = s.put(Bytes::from_static(b"world!")).await.unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!((a.base, a.size), (0, 5));
        assert_eq!((b.base, b.size), (5, 6));
        // A fresh handle (empty cache, new log file) reads from disk.
        let s2 = Segments::open(&url, 1024).unwrap();
        assert_eq!(&s2.get(&b).await.unwrap()[..], b"world!");
        // The file being appended to is not listed or deleted.
        assert!(s.list().await.unwrap().is_empty());
        s.delete(&a.key).await.unwrap();
        assert_eq!(&s2.get(&a).await.unwrap()[..], b"hello");
        assert_eq!(s2.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn object_store_backend_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_object_store(dir.path().to_str().unwrap()).unwrap();
        let s = Segments::with_store(store, 0);
        let loc = s.put(Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(loc.base, 0);
        assert_eq!(&s.get(&loc).await.unwrap()[..], b"abc");
        assert_eq!(s.list().await.unwrap().len(), 1);
        s.delete(&loc.key).await.unwrap();
        assert!(s.list().await.unwrap().is_empty());
    }
}
