//! Segment objects in the object store, and the cache of recent segments.
//!
//! Layout: `segments/<uuid>.seg`, each object the concatenation of the record
//! batches of one flush (many partitions). The offset index in the metadata
//! store says which byte range of which segment holds each batch.

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
    #[error("invalid object store URL '{0}': expected file://PATH")]
    BadUrl(String),
    #[error("cannot prepare object directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct Segments {
    store: Arc<dyn ObjectStore>,
    /// Recently written or read segments, by key. Weighted by size.
    cache: moka::future::Cache<String, Bytes>,
}

impl Segments {
    pub fn open(url: &str, cache_bytes: u64) -> Result<Segments, ObjectError> {
        let store: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path).map_err(|source| ObjectError::Dir {
                path: path.to_string(),
                source,
            })?;
            Arc::new(LocalFileSystem::new_with_prefix(path)?)
        } else {
            return Err(ObjectError::BadUrl(url.to_string()));
        };
        Ok(Self::with_store(store, cache_bytes))
    }

    pub fn with_store(store: Arc<dyn ObjectStore>, cache_bytes: u64) -> Segments {
        let cache = moka::future::Cache::builder()
            .max_capacity(cache_bytes)
            .weigher(|_k: &String, v: &Bytes| v.len().try_into().unwrap_or(u32::MAX))
            .build();
        Segments { store, cache }
    }

    pub fn new_key() -> String {
        format!("segments/{}.seg", uuid::Uuid::new_v4().simple())
    }

    /// Writes a segment durably, then keeps it in the cache for fetches.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), ObjectError> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(data.clone()))
            .await?;
        self.cache.insert(key.to_string(), data).await;
        Ok(())
    }

    /// The whole segment, from the cache or the store.
    pub async fn get(&self, key: &str) -> Result<Bytes, Arc<ObjectError>> {
        let store = self.store.clone();
        let k = key.to_string();
        self.cache
            .try_get_with(k.clone(), async move {
                let got = store.get(&Path::from(k.as_str())).await?;
                Ok::<_, ObjectError>(got.bytes().await?)
            })
            .await
    }

    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        self.cache.invalidate(key).await;
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Keys of all segment objects with their last-modified time in ms.
    pub async fn list(&self) -> Result<Vec<(String, i64)>, ObjectError> {
        use futures::TryStreamExt;
        let items: Vec<_> = self
            .store
            .list(Some(&Path::from("segments")))
            .try_collect()
            .await?;
        Ok(items
            .into_iter()
            .map(|m| (m.location.to_string(), m.last_modified.timestamp_millis()))
            .collect())
    }
}
