//! The schema registry's storage in the broker's metadata store, so schemas
//! live beside topics and offsets (one database to back up, and every broker
//! sharing the store sees the same registry).

use futures::FutureExt;
use sluice_schema_registry::{
    NewSchema, RegistryError, SchemaReference, SchemaStore, SettingKind, StoreFuture, StoredSchema,
    SubjectVersion,
};
use sqlx::Row;

use crate::store::meta::MetaStore;

pub struct SqlSchemaStore {
    meta: MetaStore,
}

impl SqlSchemaStore {
    pub fn new(meta: MetaStore) -> SqlSchemaStore {
        SqlSchemaStore { meta }
    }
}

fn db(e: sqlx::Error) -> RegistryError {
    RegistryError::Store(e.to_string())
}

/// A version update that touched no row names a version that does not exist.
fn version_touched(rows: u64, subject: String, version: i32) -> Result<(), RegistryError> {
    if rows == 0 {
        return Err(RegistryError::VersionNotFound {
            subject,
            version: version.to_string(),
        });
    }
    Ok(())
}

fn kind_name(kind: SettingKind) -> &'static str {
    match kind {
        SettingKind::Compatibility => "compatibility",
        SettingKind::Mode => "mode",
    }
}

fn version_row(r: &sqlx::any::AnyRow) -> SubjectVersion {
    SubjectVersion {
        subject: r.get(0),
        version: r.get::<i64, _>(1) as i32,
        schema_id: r.get::<i64, _>(2) as u32,
        deleted: r.get::<i64, _>(3) != 0,
    }
}

impl SchemaStore for SqlSchemaStore {
    fn intern_schema(&self, schema: NewSchema) -> StoreFuture<'_, u32> {
        async move {
            let refs = serde_json::to_string(&schema.references)
                .map_err(|e| RegistryError::Store(e.to_string()))?;
            let pool = self.meta.pool();
            // Insert-or-get in one statement; the unique key is the identity.
            sqlx::query(
                "INSERT INTO registry_schemas (schema_type, canonical, schema, refs)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&schema.schema_type)
            .bind(&schema.canonical)
            .bind(&schema.schema)
            .bind(&refs)
            .execute(pool)
            .await
            .map_err(db)?;
            let id: i64 =
                sqlx::query("SELECT id FROM registry_schemas WHERE canonical = $1 AND refs = $2")
                    .bind(&schema.canonical)
                    .bind(&refs)
                    .fetch_one(pool)
                    .await
                    .map_err(db)?
                    .get(0);
            Ok(id as u32)
        }
        .boxed()
    }

    fn schema(&self, id: u32) -> StoreFuture<'_, Option<StoredSchema>> {
        async move {
            let row = sqlx::query(
                "SELECT id, schema_type, canonical, schema, refs FROM registry_schemas WHERE id = $1",
            )
            .bind(id as i64)
            .fetch_optional(self.meta.pool())
            .await
            .map_err(db)?;
            Ok(row.map(|r| StoredSchema {
                id: r.get::<i64, _>(0) as u32,
                schema_type: r.get(1),
                canonical: r.get(2),
                schema: r.get(3),
                references: serde_json::from_str::<Vec<SchemaReference>>(r.get::<&str, _>(4))
                    .unwrap_or_default(),
            }))
        }
        .boxed()
    }

    fn subjects(&self) -> StoreFuture<'_, Vec<String>> {
        async move {
            let rows =
                sqlx::query("SELECT DISTINCT subject FROM registry_versions ORDER BY subject")
                    .fetch_all(self.meta.pool())
                    .await
                    .map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        }
        .boxed()
    }

    fn versions(&self, subject: String) -> StoreFuture<'_, Vec<SubjectVersion>> {
        async move {
            let rows = sqlx::query(
                "SELECT subject, version, schema_id, deleted FROM registry_versions
                 WHERE subject = $1 ORDER BY version",
            )
            .bind(&subject)
            .fetch_all(self.meta.pool())
            .await
            .map_err(db)?;
            Ok(rows.iter().map(version_row).collect())
        }
        .boxed()
    }

    fn versions_by_schema(&self, id: u32) -> StoreFuture<'_, Vec<SubjectVersion>> {
        async move {
            let rows = sqlx::query(
                "SELECT subject, version, schema_id, deleted FROM registry_versions
                 WHERE schema_id = $1 ORDER BY subject, version",
            )
            .bind(id as i64)
            .fetch_all(self.meta.pool())
            .await
            .map_err(db)?;
            Ok(rows.iter().map(version_row).collect())
        }
        .boxed()
    }

    fn add_version(&self, v: SubjectVersion) -> StoreFuture<'_, ()> {
        async move {
            let done = sqlx::query(
                "INSERT INTO registry_versions (subject, version, schema_id, deleted)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (subject, version) DO NOTHING",
            )
            .bind(&v.subject)
            .bind(v.version as i64)
            .bind(v.schema_id as i64)
            .bind(v.deleted as i64)
            .execute(self.meta.pool())
            .await
            .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(RegistryError::Store(format!(
                    "subject '{}' already has version {}",
                    v.subject, v.version
                )));
            }
            Ok(())
        }
        .boxed()
    }

    fn set_deleted(&self, subject: String, version: i32, deleted: bool) -> StoreFuture<'_, ()> {
        async move {
            let done = sqlx::query(
                "UPDATE registry_versions SET deleted = $1 WHERE subject = $2 AND version = $3",
            )
            .bind(deleted as i64)
            .bind(&subject)
            .bind(version as i64)
            .execute(self.meta.pool())
            .await
            .map_err(db)?;
            version_touched(done.rows_affected(), subject, version)
        }
        .boxed()
    }

    fn remove_version(&self, subject: String, version: i32) -> StoreFuture<'_, ()> {
        async move {
            let done =
                sqlx::query("DELETE FROM registry_versions WHERE subject = $1 AND version = $2")
                    .bind(&subject)
                    .bind(version as i64)
                    .execute(self.meta.pool())
                    .await
                    .map_err(db)?;
            version_touched(done.rows_affected(), subject, version)
        }
        .boxed()
    }

    fn setting(
        &self,
        kind: SettingKind,
        subject: Option<String>,
    ) -> StoreFuture<'_, Option<String>> {
        async move {
            let row =
                sqlx::query("SELECT value FROM registry_settings WHERE kind = $1 AND subject = $2")
                    .bind(kind_name(kind))
                    .bind(subject.unwrap_or_default())
                    .fetch_optional(self.meta.pool())
                    .await
                    .map_err(db)?;
            Ok(row.map(|r| r.get(0)))
        }
        .boxed()
    }

    fn set_setting(
        &self,
        kind: SettingKind,
        subject: Option<String>,
        value: Option<String>,
    ) -> StoreFuture<'_, ()> {
        async move {
            let pool = self.meta.pool();
            let subject = subject.unwrap_or_default();
            match value {
                Some(v) => sqlx::query(
                    "INSERT INTO registry_settings (kind, subject, value) VALUES ($1, $2, $3)
                     ON CONFLICT (kind, subject) DO UPDATE SET value = excluded.value",
                )
                .bind(kind_name(kind))
                .bind(&subject)
                .bind(v)
                .execute(pool)
                .await
                .map_err(db)?,
                None => {
                    sqlx::query("DELETE FROM registry_settings WHERE kind = $1 AND subject = $2")
                        .bind(kind_name(kind))
                        .bind(&subject)
                        .execute(pool)
                        .await
                        .map_err(db)?
                }
            };
            Ok(())
        }
        .boxed()
    }
}
