//! Registry operations, independent of HTTP: the REST handlers in `api`
//! and the broker's produce path both call these.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use moka::future::Cache;
use sluice_proto::{
    CompatibilityLevel, CompiledSchema, SchemaForm, check_compatibility, compile, detect_form,
    embedded_source, incompatibilities,
};
use tokio::sync::Mutex;

use crate::RegistryError;
use crate::store::{
    NewSchema, SchemaReference, SchemaStore, SettingKind, StoredSchema, SubjectVersion,
};

/// The only schema type this registry stores.
pub const PROTOBUF: &str = "PROTOBUF";

/// Compiled schemas kept in memory; each holds a descriptor pool.
const CACHE_CAPACITY: u64 = 10_000;

/// Bound on the transitive reference set of one schema, so a reference
/// loop in stored data cannot stall a request.
const MAX_REFERENCED_FILES: usize = 1_000;

/// Registry over a [`SchemaStore`]. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn SchemaStore>,
    compiled: Cache<u32, Arc<CompiledSchema>>,
    /// Serialises writes so "check, then insert" sequences (next version
    /// number, compatibility against the latest version) see no
    /// interleaved change from another request.
    writes: Mutex<()>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// A schema registered under a subject, compiled.
#[derive(Debug, Clone)]
pub struct SubjectSchema {
    pub subject: String,
    pub version: i32,
    pub id: u32,
    pub schema: Arc<CompiledSchema>,
}

/// A schema submitted for registration, lookup or a compatibility check.
#[derive(Debug, Clone, Default)]
pub struct SchemaSubmission {
    /// `.proto` text or base64 of a serialized `FileDescriptorProto`.
    pub schema: String,
    /// `None` means Protobuf; anything else but `PROTOBUF` is refused.
    pub schema_type: Option<String>,
    pub references: Vec<SchemaReference>,
}

/// A subject version with its schema row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDetails {
    pub subject: String,
    pub version: i32,
    pub id: u32,
    pub schema_type: String,
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

/// Which version of a subject a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(i32),
}

impl FromStr for VersionSpec {
    type Err = RegistryError;

    /// `latest`, `-1` (Confluent's alias for latest) or a positive integer.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionSpec::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_owned())),
        }
    }
}

impl fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSpec::Latest => f.write_str("latest"),
            VersionSpec::Number(n) => write!(f, "{n}"),
        }
    }
}

/// Whether the registry (or a subject) accepts writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    ReadWrite,
    ReadOnly,
    /// Like `ReadOnly`; Confluent uses it to let a subject override a
    /// global mode. Both refuse writes here.
    ReadOnlyOverride,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::ReadOnlyOverride => "READONLY_OVERRIDE",
        }
    }
}

impl FromStr for Mode {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "READWRITE" => Ok(Mode::ReadWrite),
            "READONLY" => Ok(Mode::ReadOnly),
            "READONLY_OVERRIDE" => Ok(Mode::ReadOnlyOverride),
            _ => Err(RegistryError::InvalidMode(s.to_owned())),
        }
    }
}

fn invalid_schema(err: sluice_proto::ProtoError) -> RegistryError {
    RegistryError::InvalidSchema(err.to_string())
}

fn missing_version(subject: &str, spec: impl fmt::Display) -> RegistryError {
    RegistryError::VersionNotFound {
        subject: subject.to_owned(),
        version: spec.to_string(),
    }
}

fn check_schema_type(schema_type: Option<&str>) -> Result<(), RegistryError> {
    match schema_type {
        None => Ok(()),
        Some(t) if t.eq_ignore_ascii_case(PROTOBUF) => Ok(()),
        Some(other) => Err(RegistryError::InvalidSchema(format!(
            "schema type '{other}' is not supported; this registry stores PROTOBUF schemas only"
        ))),
    }
}

/// Picks a version row: the last visible one for `Latest`.
fn pick(
    rows: &[SubjectVersion],
    spec: VersionSpec,
    include_deleted: bool,
) -> Option<&SubjectVersion> {
    let mut visible = rows.iter().filter(|r| include_deleted || !r.deleted);
    match spec {
        VersionSpec::Latest => visible.next_back(),
        VersionSpec::Number(n) => visible.find(|r| r.version == n),
    }
}

impl Registry {
    pub fn new(store: Arc<dyn SchemaStore>) -> Self {
        Registry {
            inner: Arc::new(Inner {
                store,
                compiled: Cache::builder().max_capacity(CACHE_CAPACITY).build(),
                writes: Mutex::new(()),
            }),
        }
    }

    /// The store this registry runs on.
    pub fn store(&self) -> &Arc<dyn SchemaStore> {
        &self.inner.store
    }

    fn store_ref(&self) -> &dyn SchemaStore {
        self.inner.store.as_ref()
    }

    // -----------------------------------------------------------------
    // Read side used by the broker.

    /// The compiled schema with `id`, compiled once and then cached.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<CompiledSchema>, RegistryError> {
        self.inner
            .compiled
            .try_get_with(id, async {
                let stored = self.stored_schema(id).await?;
                let references = self.gather_references(&stored.references).await?;
                compile(&stored.schema, &references)
                    .map(Arc::new)
                    .map_err(invalid_schema)
            })
            .await
            .map_err(|err| (*err).clone())
    }

    /// The newest live version of `subject`, compiled.
    pub async fn latest_for_subject(&self, subject: &str) -> Result<SubjectSchema, RegistryError> {
        let rows = self.store_ref().versions(subject.to_owned()).await?;
        let row = pick(&rows, VersionSpec::Latest, false)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_owned()))?;
        Ok(SubjectSchema {
            subject: subject.to_owned(),
            version: row.version,
            id: row.schema_id,
            schema: self.schema_by_id(row.schema_id).await?,
        })
    }

    /// Every version of `subject`, oldest first, compiled. Soft-deleted
    /// versions are included: records framed with their schemas may still
    /// be stored, and readers of those records need them.
    pub async fn subject_history(
        &self,
        subject: &str,
    ) -> Result<Vec<SubjectSchema>, RegistryError> {
        let rows = self.store_ref().versions(subject.to_owned()).await?;
        if rows.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(SubjectSchema {
                subject: subject.to_owned(),
                version: row.version,
                id: row.schema_id,
                schema: self.schema_by_id(row.schema_id).await?,
            });
        }
        Ok(out)
    }

    /// The stored row of schema `id`.
    pub async fn stored_schema(&self, id: u32) -> Result<StoredSchema, RegistryError> {
        self.store_ref()
            .schema(id)
            .await?
            .ok_or_else(|| RegistryError::SchemaNotFound(format!("schema {id} not found")))
    }

    /// The transitive reference set of a schema as import path → schema
    /// text. References to unregistered subjects named like an embedded
    /// file resolve to that file.
    async fn gather_references(
        &self,
        references: &[SchemaReference],
    ) -> Result<BTreeMap<String, String>, RegistryError> {
        let mut out = BTreeMap::new();
        let mut queue: Vec<SchemaReference> = references.to_vec();
        while let Some(reference) = queue.pop() {
            if out.contains_key(&reference.name) {
                continue;
            }
            if out.len() >= MAX_REFERENCED_FILES {
                return Err(RegistryError::InvalidSchema(format!(
                    "more than {MAX_REFERENCED_FILES} referenced files"
                )));
            }
            let rows = self.store_ref().versions(reference.subject.clone()).await?;
            let spec = if reference.version == -1 {
                VersionSpec::Latest
            } else {
                VersionSpec::Number(reference.version)
            };
            // Soft-deleted versions still resolve: schemas registered
            // against them must keep compiling.
            if let Some(row) = pick(&rows, spec, spec != VersionSpec::Latest) {
                let target = self.stored_schema(row.schema_id).await?;
                queue.extend(target.references.iter().cloned());
                out.insert(reference.name, target.schema);
            } else if let Some(text) =
                embedded_source(&reference.subject).or_else(|| embedded_source(&reference.name))
            {
                out.insert(reference.name, text.to_owned());
            } else {
                return Err(RegistryError::InvalidSchema(format!(
                    "reference '{}' names subject '{}' version {}, which is not registered",
                    reference.name, reference.subject, reference.version
                )));
            }
        }
        Ok(out)
    }

    async fn compile_submission(
        &self,
        submission: &SchemaSubmission,
    ) -> Result<CompiledSchema, RegistryError> {
        check_schema_type(submission.schema_type.as_deref())?;
        if submission.schema.trim().is_empty() {
            return Err(RegistryError::InvalidSchema("empty schema".to_owned()));
        }
        let references = self.gather_references(&submission.references).await?;
        compile(&submission.schema, &references).map_err(invalid_schema)
    }

    // -----------------------------------------------------------------
    // Subjects and versions.

    async fn ensure_writable(&self, subject: Option<&str>) -> Result<(), RegistryError> {
        let mode = self.effective_mode(subject).await?;
        if mode == Mode::ReadWrite {
            Ok(())
        } else {
            Err(RegistryError::OperationNotPermitted(match subject {
                Some(s) => format!("subject '{s}' is in {} mode", mode.as_str()),
                None => format!("the registry is in {} mode", mode.as_str()),
            }))
        }
    }

    /// Registers an embedded file as version 1 of its own subject when that
    /// subject is asked for but has never been registered, so clients can
    /// fetch it like any referenced schema. Caller holds the write lock.
    async fn materialise_embedded(&self, subject: &str) -> Result<(), RegistryError> {
        let Some(text) = embedded_source(subject) else {
            return Ok(());
        };
        if !self
            .store_ref()
            .versions(subject.to_owned())
            .await?
            .is_empty()
        {
            return Ok(());
        }
        let compiled = compile(text, &BTreeMap::new()).map_err(invalid_schema)?;
        let id = self
            .store_ref()
            .intern_schema(NewSchema {
                schema_type: PROTOBUF.to_owned(),
                canonical: compiled.canonical_text(),
                schema: text.to_owned(),
                references: Vec::new(),
            })
            .await?;
        self.store_ref()
            .add_version(SubjectVersion {
                subject: subject.to_owned(),
                version: 1,
                schema_id: id,
                deleted: false,
            })
            .await
    }

    async fn ensure_embedded(&self, subject: &str) -> Result<(), RegistryError> {
        if embedded_source(subject).is_none() {
            return Ok(());
        }
        let _writes = self.inner.writes.lock().await;
        self.materialise_embedded(subject).await
    }

    /// Registers `submission` under `subject`, returning `(id, version)`.
    /// A schema already live under the subject returns its existing id and
    /// version; otherwise it must pass the subject's compatibility level.
    /// With `normalize`, the canonical text is what gets stored and served.
    pub async fn register(
        &self,
        subject: &str,
        submission: &SchemaSubmission,
        normalize: bool,
    ) -> Result<(u32, i32), RegistryError> {
        self.ensure_writable(Some(subject)).await?;
        let _writes = self.inner.writes.lock().await;
        for reference in &submission.references {
            self.materialise_embedded(&reference.subject).await?;
        }
        let compiled = self.compile_submission(submission).await?;
        let canonical = compiled.canonical_text();
        let store = self.store_ref();
        let rows = store.versions(subject.to_owned()).await?;
        let live: Vec<&SubjectVersion> = rows.iter().filter(|r| !r.deleted).collect();
        for row in &live {
            let existing = self.stored_schema(row.schema_id).await?;
            if existing.canonical == canonical && existing.references == submission.references {
                return Ok((row.schema_id, row.version));
            }
        }

        let level = self.effective_compatibility(Some(subject)).await?;
        if level != CompatibilityLevel::None && !live.is_empty() {
            let against = if level.is_transitive() {
                &live[..]
            } else {
                &live[live.len() - 1..]
            };
            let mut previous = Vec::with_capacity(against.len());
            for row in against {
                previous.push(self.schema_by_id(row.schema_id).await?);
            }
            let previous: Vec<&CompiledSchema> = previous.iter().map(Arc::as_ref).collect();
            let problems = check_compatibility(level, &compiled, &previous);
            if !problems.is_empty() {
                return Err(RegistryError::Incompatible(problems));
            }
        }

        // Descriptor-form schemas are stored as text so every client can
        // read them back; the serialized form is derived on request.
        let schema = if normalize || detect_form(&submission.schema) == SchemaForm::Descriptor {
            canonical.clone()
        } else {
            submission.schema.clone()
        };
        let id = store
            .intern_schema(NewSchema {
                schema_type: PROTOBUF.to_owned(),
                canonical,
                schema,
                references: submission.references.clone(),
            })
            .await?;
        let version = rows.iter().map(|r| r.version).max().unwrap_or(0) + 1;
        store
            .add_version(SubjectVersion {
                subject: subject.to_owned(),
                version,
                schema_id: id,
                deleted: false,
            })
            .await?;
        tracing::info!(subject, id, version, "registered schema");
        Ok((id, version))
    }

    async fn details(&self, row: &SubjectVersion) -> Result<VersionDetails, RegistryError> {
        let stored = self.stored_schema(row.schema_id).await?;
        Ok(VersionDetails {
            subject: row.subject.clone(),
            version: row.version,
            id: row.schema_id,
            schema_type: stored.schema_type,
            schema: stored.schema,
            references: stored.references,
        })
    }

    /// Finds the version of `subject` holding the same schema (same
    /// canonical text and references) as `submission`.
    pub async fn lookup(
        &self,
        subject: &str,
        submission: &SchemaSubmission,
        include_deleted: bool,
    ) -> Result<VersionDetails, RegistryError> {
        let rows = self.store_ref().versions(subject.to_owned()).await?;
        if !rows.iter().any(|r| include_deleted || !r.deleted) {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let compiled = self.compile_submission(submission).await?;
        let canonical = compiled.canonical_text();
        for row in rows.iter().rev().filter(|r| include_deleted || !r.deleted) {
            let stored = self.stored_schema(row.schema_id).await?;
            if stored.canonical == canonical && stored.references == submission.references {
                return self.details(row).await;
            }
        }
        Err(RegistryError::SchemaNotFound(format!(
            "schema is not registered under subject '{subject}'"
        )))
    }

    /// Subjects with a live version (or any version, with `include_deleted`).
    pub async fn subjects(&self, include_deleted: bool) -> Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        for subject in self.store_ref().subjects().await? {
            if include_deleted {
                out.push(subject);
                continue;
            }
            let rows = self.store_ref().versions(subject.clone()).await?;
            if rows.iter().any(|r| !r.deleted) {
                out.push(subject);
            }
        }
        Ok(out)
    }

    /// Version numbers of `subject`.
    pub async fn versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        self.ensure_embedded(subject).await?;
        let versions: Vec<i32> = self
            .store_ref()
            .versions(subject.to_owned())
            .await?
            .into_iter()
            .filter(|r| include_deleted || !r.deleted)
            .map(|r| r.version)
            .collect();
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    /// One version of `subject`.
    pub async fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        include_deleted: bool,
    ) -> Result<VersionDetails, RegistryError> {
        self.ensure_embedded(subject).await?;
        let rows = self.store_ref().versions(subject.to_owned()).await?;
        if !rows.iter().any(|r| include_deleted || !r.deleted) {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let row =
            pick(&rows, spec, include_deleted).ok_or_else(|| missing_version(subject, spec))?;
        self.details(row).await
    }

    /// Subject versions that use schema `id`.
    pub async fn versions_of_schema(
        &self,
        id: u32,
        include_deleted: bool,
    ) -> Result<Vec<SubjectVersion>, RegistryError> {
        self.stored_schema(id).await?;
        Ok(self
            .store_ref()
            .versions_by_schema(id)
            .await?
            .into_iter()
            .filter(|r| include_deleted || !r.deleted)
            .collect())
    }

    /// Ids of live schemas that reference `subject` version `version`.
    pub async fn referenced_by(
        &self,
        subject: &str,
        version: i32,
    ) -> Result<Vec<u32>, RegistryError> {
        let mut ids = Vec::new();
        for other in self.store_ref().subjects().await? {
            for row in self.store_ref().versions(other).await? {
                if row.deleted || ids.contains(&row.schema_id) {
                    continue;
                }
                let stored = self.stored_schema(row.schema_id).await?;
                if stored
                    .references
                    .iter()
                    .any(|r| r.subject == subject && r.version == version)
                {
                    ids.push(row.schema_id);
                }
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    async fn refuse_if_referenced(&self, subject: &str, version: i32) -> Result<(), RegistryError> {
        if self.referenced_by(subject, version).await?.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::ReferenceExists {
                subject: subject.to_owned(),
                version,
            })
        }
    }

    /// Deletes one version: soft by default; `permanent` removes a version
    /// that was soft-deleted before. Returns the version number.
    pub async fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        self.ensure_writable(Some(subject)).await?;
        let _writes = self.inner.writes.lock().await;
        let rows = self.store_ref().versions(subject.to_owned()).await?;
        if rows.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let row = pick(&rows, spec, permanent)
            .or_else(|| pick(&rows, spec, true))
            .ok_or_else(|| missing_version(subject, spec))?;
        let version = row.version;
        if permanent {
            if !row.deleted {
                return Err(RegistryError::VersionNotSoftDeleted {
                    subject: subject.to_owned(),
                    version,
                });
            }
            self.store_ref()
                .remove_version(subject.to_owned(), version)
                .await?;
        } else {
            if row.deleted {
                return Err(RegistryError::VersionSoftDeleted {
                    subject: subject.to_owned(),
                    version,
                });
            }
            self.refuse_if_referenced(subject, version).await?;
            self.store_ref()
                .set_deleted(subject.to_owned(), version, true)
                .await?;
        }
        Ok(version)
    }

    /// Deletes every version of a subject (soft, or `permanent` after a
    /// soft delete). Returns the versions deleted.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        self.ensure_writable(Some(subject)).await?;
        let _writes = self.inner.writes.lock().await;
        let rows = self.store_ref().versions(subject.to_owned()).await?;
        if rows.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let mut deleted = Vec::new();
        if permanent {
            if rows.iter().any(|r| !r.deleted) {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_owned()));
            }
            for row in &rows {
                self.store_ref()
                    .remove_version(subject.to_owned(), row.version)
                    .await?;
                deleted.push(row.version);
            }
            for kind in [SettingKind::Compatibility, SettingKind::Mode] {
                self.store_ref()
                    .set_setting(kind, Some(subject.to_owned()), None)
                    .await?;
            }
        } else {
            let live: Vec<&SubjectVersion> = rows.iter().filter(|r| !r.deleted).collect();
            if live.is_empty() {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_owned()));
            }
            for row in &live {
                self.refuse_if_referenced(subject, row.version).await?;
            }
            for row in live {
                self.store_ref()
                    .set_deleted(subject.to_owned(), row.version, true)
                    .await?;
                deleted.push(row.version);
            }
        }
        Ok(deleted)
    }

    // -----------------------------------------------------------------
    // Compatibility.

    /// Checks `submission` against `subject`: against one version when
    /// `spec` is given, else against the versions the subject's level
    /// names. Returns the problems found (empty when compatible).
    pub async fn check(
        &self,
        subject: &str,
        spec: Option<VersionSpec>,
        submission: &SchemaSubmission,
    ) -> Result<Vec<String>, RegistryError> {
        let compiled = self.compile_submission(submission).await?;
        let level = self.effective_compatibility(Some(subject)).await?;
        let rows = self.store_ref().versions(subject.to_owned()).await?;
        let live: Vec<&SubjectVersion> = rows.iter().filter(|r| !r.deleted).collect();
        match spec {
            None | Some(VersionSpec::Latest) if live.is_empty() => Ok(Vec::new()),
            Some(VersionSpec::Number(_)) if live.is_empty() => {
                Err(RegistryError::SubjectNotFound(subject.to_owned()))
            }
            Some(spec) => {
                let row = pick(&rows, spec, false).ok_or_else(|| missing_version(subject, spec))?;
                let old = self.schema_by_id(row.schema_id).await?;
                Ok(incompatibilities(&old, &compiled, level))
            }
            None => {
                let mut previous = Vec::with_capacity(live.len());
                for row in &live {
                    previous.push(self.schema_by_id(row.schema_id).await?);
                }
                let previous: Vec<&CompiledSchema> = previous.iter().map(Arc::as_ref).collect();
                Ok(check_compatibility(level, &compiled, &previous))
            }
        }
    }

    // -----------------------------------------------------------------
    // Settings.

    async fn setting(
        &self,
        kind: SettingKind,
        subject: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        self.store_ref()
            .setting(kind, subject.map(str::to_owned))
            .await
    }

    async fn subject_exists(&self, subject: &str) -> Result<bool, RegistryError> {
        Ok(!self
            .store_ref()
            .versions(subject.to_owned())
            .await?
            .is_empty())
    }

    fn parse_level(stored: &str) -> Result<CompatibilityLevel, RegistryError> {
        stored.parse().map_err(|_| {
            RegistryError::Store(format!("stored compatibility level '{stored}' is invalid"))
        })
    }

    /// The level a subject is checked with: its own, else the global one,
    /// else `BACKWARD`.
    pub async fn effective_compatibility(
        &self,
        subject: Option<&str>,
    ) -> Result<CompatibilityLevel, RegistryError> {
        if let Some(subject) = subject
            && let Some(level) = self
                .setting(SettingKind::Compatibility, Some(subject))
                .await?
        {
            return Self::parse_level(&level);
        }
        match self.setting(SettingKind::Compatibility, None).await? {
            Some(level) => Self::parse_level(&level),
            None => Ok(CompatibilityLevel::default()),
        }
    }

    /// The level configured for `subject` itself (`GET /config/{subject}`).
    pub async fn subject_compatibility(
        &self,
        subject: &str,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel, RegistryError> {
        match self
            .setting(SettingKind::Compatibility, Some(subject))
            .await?
        {
            Some(level) => Self::parse_level(&level),
            None if default_to_global => self.effective_compatibility(None).await,
            None if self.subject_exists(subject).await? => {
                Err(RegistryError::SubjectConfigNotFound(subject.to_owned()))
            }
            None => Err(RegistryError::SubjectNotFound(subject.to_owned())),
        }
    }

    /// Sets the global (`None`) or a subject's level.
    pub async fn set_compatibility(
        &self,
        subject: Option<&str>,
        level: &str,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let parsed: CompatibilityLevel = level
            .parse()
            .map_err(|_| RegistryError::InvalidCompatibility(level.to_owned()))?;
        self.store_ref()
            .set_setting(
                SettingKind::Compatibility,
                subject.map(str::to_owned),
                Some(parsed.as_str().to_owned()),
            )
            .await?;
        Ok(parsed)
    }

    /// Removes the global or a subject's level, returning the level that
    /// applied before.
    pub async fn delete_compatibility(
        &self,
        subject: Option<&str>,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let previous = match subject {
            Some(s) => self.subject_compatibility(s, false).await?,
            None => self.effective_compatibility(None).await?,
        };
        self.store_ref()
            .set_setting(SettingKind::Compatibility, subject.map(str::to_owned), None)
            .await?;
        Ok(previous)
    }

    fn parse_mode(stored: &str) -> Result<Mode, RegistryError> {
        stored
            .parse()
            .map_err(|_| RegistryError::Store(format!("stored mode '{stored}' is invalid")))
    }

    /// The mode that applies to a subject (or globally): its own, else
    /// the global one, else `READWRITE`.
    pub async fn effective_mode(&self, subject: Option<&str>) -> Result<Mode, RegistryError> {
        if let Some(subject) = subject
            && let Some(mode) = self.setting(SettingKind::Mode, Some(subject)).await?
        {
            return Self::parse_mode(&mode);
        }
        match self.setting(SettingKind::Mode, None).await? {
            Some(mode) => Self::parse_mode(&mode),
            None => Ok(Mode::default()),
        }
    }

    /// The mode configured for `subject` itself (`GET /mode/{subject}`).
    pub async fn subject_mode(
        &self,
        subject: &str,
        default_to_global: bool,
    ) -> Result<Mode, RegistryError> {
        match self.setting(SettingKind::Mode, Some(subject)).await? {
            Some(mode) => Self::parse_mode(&mode),
            None if default_to_global => self.effective_mode(None).await,
            None if self.subject_exists(subject).await? => {
                Err(RegistryError::SubjectModeNotFound(subject.to_owned()))
            }
            None => Err(RegistryError::SubjectNotFound(subject.to_owned())),
        }
    }

    /// Sets the global (`None`) or a subject's mode.
    pub async fn set_mode(&self, subject: Option<&str>, mode: &str) -> Result<Mode, RegistryError> {
        let parsed: Mode = mode.parse()?;
        self.store_ref()
            .set_setting(
                SettingKind::Mode,
                subject.map(str::to_owned),
                Some(parsed.as_str().to_owned()),
            )
            .await?;
        Ok(parsed)
    }

    /// Removes a subject's mode, returning the mode it had.
    pub async fn delete_mode(&self, subject: &str) -> Result<Mode, RegistryError> {
        let previous = self.subject_mode(subject, false).await?;
        self.store_ref()
            .set_setting(SettingKind::Mode, Some(subject.to_owned()), None)
            .await?;
        Ok(previous)
    }
}
