//! The storage contract behind the registry, and an in-memory store.
//!
//! The registry keeps all policy (versioning, compatibility, soft-delete
//! rules, caching) itself and asks the store only to remember facts, so a
//! store is a thin mapping onto whatever database hosts it. Methods return
//! boxed futures so the trait can be used as `Arc<dyn SchemaStore>`.
//!
//! Contract:
//!
//! * **Schemas** are immutable rows `(id, schema type, canonical text,
//!   schema text, references)`. [`SchemaStore::intern_schema`] returns the
//!   id of the row whose canonical text *and* reference list equal the
//!   given ones, inserting a row with a fresh id when there is none. Ids
//!   are global across subjects, positive, and never reused. Schema rows
//!   are never deleted: records framed with an id stay decodable after
//!   their subject versions are deleted.
//! * **Subject versions** are rows `(subject, version, schema id, deleted)`
//!   unique on `(subject, version)`. The registry chooses version numbers;
//!   the store only refuses duplicates. Soft deletion flips `deleted`; hard
//!   deletion removes the row.
//! * **Settings** are optional strings per kind (compatibility level or
//!   mode), either global (`subject = None`) or per subject. `None` as a
//!   value removes the setting.
//!
//! The registry serialises its own writes, so a store need not offer
//! transactions across calls; each call must be atomic on its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use futures::future::{BoxFuture, FutureExt as _, ready};
use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// What a store method returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, RegistryError>>;

/// A reference from one schema to another registered one: `name` is the
/// import path used in the referring schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// A schema to intern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchema {
    /// Always `"PROTOBUF"` today; stored so the column exists.
    pub schema_type: String,
    /// Identity of the schema: the normalised text.
    pub canonical: String,
    /// The text served back to clients.
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

/// A stored schema row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchema {
    pub id: u32,
    pub schema_type: String,
    pub canonical: String,
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

/// A subject version row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i32,
    pub schema_id: u32,
    pub deleted: bool,
}

/// Which per-subject/global setting a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SettingKind {
    /// A compatibility level such as `BACKWARD`.
    Compatibility,
    /// A mode such as `READWRITE`.
    Mode,
}

/// Persistent state of the registry; see the module docs for the contract.
pub trait SchemaStore: Send + Sync {
    /// The id of the schema with this canonical text and references,
    /// creating it if needed.
    fn intern_schema(&self, schema: NewSchema) -> StoreFuture<'_, u32>;
    /// A schema by id.
    fn schema(&self, id: u32) -> StoreFuture<'_, Option<StoredSchema>>;
    /// Every subject with at least one version row, deleted or not, sorted.
    fn subjects(&self) -> StoreFuture<'_, Vec<String>>;
    /// A subject's version rows, deleted or not, by ascending version.
    fn versions(&self, subject: String) -> StoreFuture<'_, Vec<SubjectVersion>>;
    /// Every version row, deleted or not, that points at schema `id`,
    /// ordered by subject then version.
    fn versions_by_schema(&self, id: u32) -> StoreFuture<'_, Vec<SubjectVersion>>;
    /// Adds a version row; an existing `(subject, version)` is an error.
    fn add_version(&self, version: SubjectVersion) -> StoreFuture<'_, ()>;
    /// Sets the deleted flag of an existing version row.
    fn set_deleted(&self, subject: String, version: i32, deleted: bool) -> StoreFuture<'_, ()>;
    /// Removes a version row (hard delete).
    fn remove_version(&self, subject: String, version: i32) -> StoreFuture<'_, ()>;
    /// A setting, global when `subject` is `None`.
    fn setting(
        &self,
        kind: SettingKind,
        subject: Option<String>,
    ) -> StoreFuture<'_, Option<String>>;
    /// Sets (or with `None`, clears) a setting.
    fn set_setting(
        &self,
        kind: SettingKind,
        subject: Option<String>,
        value: Option<String>,
    ) -> StoreFuture<'_, ()>;
}

/// A [`SchemaStore`] held in process memory, for tests and for a
/// standalone registry that need not survive restarts.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    /// Row `i` has id `i + 1`.
    schemas: Vec<StoredSchema>,
    by_identity: HashMap<(String, Vec<SchemaReference>), u32>,
    subjects: BTreeMap<String, BTreeMap<i32, (u32, bool)>>,
    settings: HashMap<(SettingKind, Option<String>), String>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, MemoryState> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way later calls would misread, so a poisoned lock is usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn done<T: Send + 'static>(result: Result<T, RegistryError>) -> StoreFuture<'static, T> {
        ready(result).boxed()
    }
}

fn missing_version(subject: &str, version: i32) -> RegistryError {
    RegistryError::VersionNotFound {
        subject: subject.to_owned(),
        version: version.to_string(),
    }
}

impl SchemaStore for MemoryStore {
    fn intern_schema(&self, schema: NewSchema) -> StoreFuture<'_, u32> {
        let mut state = self.state();
        let key = (schema.canonical.clone(), schema.references.clone());
        if let Some(id) = state.by_identity.get(&key) {
            return Self::done(Ok(*id));
        }
        let Ok(id) = u32::try_from(state.schemas.len() + 1) else {
            return Self::done(Err(RegistryError::Store("schema ids exhausted".to_owned())));
        };
        state.schemas.push(StoredSchema {
            id,
            schema_type: schema.schema_type,
            canonical: schema.canonical,
            schema: schema.schema,
            references: schema.references,
        });
        state.by_identity.insert(key, id);
        Self::done(Ok(id))
    }

    fn schema(&self, id: u32) -> StoreFuture<'_, Option<StoredSchema>> {
        let state = self.state();
        let found = (id as usize)
            .checked_sub(1)
            .and_then(|i| state.schemas.get(i))
            .cloned();
        Self::done(Ok(found))
    }

    fn subjects(&self) -> StoreFuture<'_, Vec<String>> {
        let state = self.state();
        Self::done(Ok(state
            .subjects
            .iter()
            .filter(|(_, versions)| !versions.is_empty())
            .map(|(s, _)| s.clone())
            .collect()))
    }

    fn versions(&self, subject: String) -> StoreFuture<'_, Vec<SubjectVersion>> {
        let state = self.state();
        let rows = state
            .subjects
            .get(&subject)
            .map(|versions| {
                versions
                    .iter()
                    .map(|(version, (schema_id, deleted))| SubjectVersion {
                        subject: subject.clone(),
                        version: *version,
                        schema_id: *schema_id,
                        deleted: *deleted,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self::done(Ok(rows))
    }

    fn versions_by_schema(&self, id: u32) -> StoreFuture<'_, Vec<SubjectVersion>> {
        let state = self.state();
        let mut rows = Vec::new();
        for (subject, versions) in &state.subjects {
            for (version, (schema_id, deleted)) in versions {
                if *schema_id == id {
                    rows.push(SubjectVersion {
                        subject: subject.clone(),
                        version: *version,
                        schema_id: *schema_id,
                        deleted: *deleted,
                    });
                }
            }
        }
        Self::done(Ok(rows))
    }

    fn add_version(&self, row: SubjectVersion) -> StoreFuture<'_, ()> {
        let mut state = self.state();
        let versions = state.subjects.entry(row.subject.clone()).or_default();
        if versions.contains_key(&row.version) {
            return Self::done(Err(RegistryError::Store(format!(
                "subject '{}' already has version {}",
                row.subject, row.version
            ))));
        }
        versions.insert(row.version, (row.schema_id, row.deleted));
        Self::done(Ok(()))
    }

    fn set_deleted(&self, subject: String, version: i32, deleted: bool) -> StoreFuture<'_, ()> {
        let mut state = self.state();
        let result = match state
            .subjects
            .get_mut(&subject)
            .and_then(|v| v.get_mut(&version))
        {
            Some(row) => {
                row.1 = deleted;
                Ok(())
            }
            None => Err(missing_version(&subject, version)),
        };
        Self::done(result)
    }

    fn remove_version(&self, subject: String, version: i32) -> StoreFuture<'_, ()> {
        let mut state = self.state();
        let removed = state
            .subjects
            .get_mut(&subject)
            .and_then(|v| v.remove(&version));
        if state.subjects.get(&subject).is_some_and(BTreeMap::is_empty) {
            state.subjects.remove(&subject);
        }
        Self::done(match removed {
            Some(_) => Ok(()),
            None => Err(missing_version(&subject, version)),
        })
    }

    fn setting(
        &self,
        kind: SettingKind,
        subject: Option<String>,
    ) -> StoreFuture<'_, Option<String>> {
        let state = self.state();
        Self::done(Ok(state.settings.get(&(kind, subject)).cloned()))
    }

    fn set_setting(
        &self,
        kind: SettingKind,
        subject: Option<String>,
        value: Option<String>,
    ) -> StoreFuture<'_, ()> {
        let mut state = self.state();
        match value {
            Some(value) => state.settings.insert((kind, subject), value),
            None => state.settings.remove(&(kind, subject)),
        };
        Self::done(Ok(()))
    }
}
