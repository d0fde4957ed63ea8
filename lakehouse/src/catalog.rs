//! The Iceberg catalog of topic tables, kept in the metadata database.
//!
//! The tables follow the Iceberg SQL catalog layout (`iceberg_tables`,
//! `iceberg_namespace_properties`), so engines with a SQL catalog
//! (PyIceberg's `SqlCatalog`, Java's `JdbcCatalog`) can open the same
//! database directly. A commit writes the new metadata file first and then
//! swaps the table's `metadata_location` with a compare-and-set; the
//! archiver's offset bookkeeping (`lake_files`, `lake_progress`) is written
//! in that same database transaction, so a table commit and the record of
//! which offsets it holds are never apart.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use iceberg::io::FileIO;
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, TableCommit,
    TableCreation, TableIdent, TableRequirement, TableUpdate,
};
use sqlx::{AnyPool, Row};

/// Iceberg's table property for deleting old metadata files on commit.
pub const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";

/// The catalog name in `catalog_name` columns; engines opening the SQL
/// catalog directly must use this name.
pub const CATALOG_NAME: &str = "sluice";

/// Offsets that one commit adds to a table: rows `first_row ..
/// first_row + row_count` of `file_path` hold `partition`'s offsets
/// `first_offset ..= last_offset` (with gaps where records were removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRange {
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub file_path: String,
    pub first_row: i64,
    pub row_count: i64,
}

/// What a commit records in the offset index beside the table update.
#[derive(Debug, Clone, Default)]
pub struct ArchiveIndex {
    /// Offsets the commit's new files hold.
    pub ranges: Vec<FileRange>,
    /// partition → next offset to archive after this commit.
    pub progress: Vec<(i32, i64)>,
    /// Data files the commit removes (compaction, retention): out of the
    /// index at once, deleted from storage once no snapshot refers to them.
    pub removed_files: Vec<String>,
    /// The removing snapshot's timestamp.
    pub removed_at_ms: i64,
}

#[derive(Clone)]
pub struct LakeCatalog {
    pool: AnyPool,
    file_io: FileIO,
    warehouse: String,
}

impl fmt::Debug for LakeCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeCatalog")
            .field("warehouse", &self.warehouse)
            .finish()
    }
}

fn sql_error(e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unexpected, format!("catalog database: {e}"))
}

fn ns_key(ns: &NamespaceIdent) -> String {
    ns.as_ref().join(".")
}

impl LakeCatalog {
    /// Opens the catalog in `pool`'s database. Its tables are created by
    /// the metadata store's versioned migrations (`broker/migrations`, one
    /// set per database). Table locations are
    /// `{warehouse}/{namespace}/{table}`.
    pub async fn open(pool: AnyPool, file_io: FileIO, warehouse: String) -> Result<LakeCatalog> {
        Ok(LakeCatalog {
            pool,
            file_io,
            warehouse: warehouse.trim_end_matches('/').to_string(),
        })
    }

    pub fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    pub fn warehouse(&self) -> &str {
        &self.warehouse
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn metadata_location(&self, ident: &TableIdent) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT metadata_location FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(CATALOG_NAME)
        .bind(ns_key(ident.namespace()))
        .bind(ident.name())
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_error)?;
        Ok(row.and_then(|r| r.get::<Option<String>, _>(0)))
    }

    fn build_table(
        &self,
        ident: TableIdent,
        location: String,
        metadata: TableMetadata,
    ) -> Result<Table> {
        Table::builder()
            .identifier(ident)
            .metadata_location(location)
            .metadata(metadata)
            .file_io(self.file_io.clone())
            .runtime(iceberg::Runtime::try_current()?)
            .build()
    }

    /// Applies `commit` and records `index` in the same transaction.
    pub async fn commit_with_index(
        &self,
        mut commit: TableCommit,
        index: &ArchiveIndex,
    ) -> Result<Table> {
        let ident = commit.identifier().clone();
        let requirements = commit.take_requirements();
        let updates = commit.take_updates();
        self.commit_changes(&ident, requirements, updates, index)
            .await
    }

    /// Checks `requirements` against the table's current metadata, applies
    /// `updates` and commits, recording `index` in the same transaction.
    pub async fn commit_changes(
        &self,
        ident: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
        index: &ArchiveIndex,
    ) -> Result<Table> {
        let current = self.load_table(ident).await?;
        let old_location = current.metadata_location_result()?.to_string();
        for requirement in requirements {
            requirement.check(Some(current.metadata()))?;
        }
        let mut builder = current
            .metadata()
            .clone()
            .into_builder(Some(old_location.clone()));
        for update in updates {
            builder = update.apply(builder)?;
        }
        let metadata = builder.build()?.metadata;
        self.swap_metadata(ident, current.metadata(), &old_location, metadata, index)
            .await
    }

    /// After a commit, deletes the metadata files that fell out of the
    /// table's metadata log (it keeps `write.metadata.previous-versions-max`
    /// entries), when `write.metadata.delete-after-commit.enabled` is set,
    /// as it is on topic tables: they commit every second or so and would
    /// otherwise leave a file per commit behind.
    async fn delete_dropped_metadata(
        &self,
        before: &TableMetadata,
        old_location: &str,
        after: &Table,
    ) {
        let enabled = after
            .metadata()
            .properties()
            .get(DELETE_AFTER_COMMIT)
            .is_some_and(|v| v == "true");
        if !enabled {
            return;
        }
        let kept: std::collections::HashSet<&str> = after
            .metadata()
            .metadata_log()
            .iter()
            .map(|m| m.metadata_file.as_str())
            .chain(after.metadata_location())
            .collect();
        let candidates = before
            .metadata_log()
            .iter()
            .map(|m| m.metadata_file.as_str())
            .chain([old_location]);
        for file in candidates {
            if !kept.contains(file)
                && let Err(e) = self.file_io.delete(file).await
            {
                tracing::debug!(file, error = %e, "cannot delete an old metadata file");
            }
        }
    }

    /// Applies `change` to the table's metadata (schema evolution, property
    /// updates) and commits it.
    pub async fn update_metadata(
        &self,
        ident: &TableIdent,
        change: impl FnOnce(TableMetadataBuilder) -> Result<TableMetadataBuilder>,
    ) -> Result<Table> {
        let current = self.load_table(ident).await?;
        let old_location = current.metadata_location_result()?.to_string();
        let builder = current
            .metadata()
            .clone()
            .into_builder(Some(old_location.clone()));
        let metadata = change(builder)?.build()?.metadata;
        self.swap_metadata(
            ident,
            current.metadata(),
            &old_location,
            metadata,
            &ArchiveIndex::default(),
        )
        .await
    }

    async fn swap_metadata(
        &self,
        ident: &TableIdent,
        before: &TableMetadata,
        old_location: &str,
        metadata: TableMetadata,
        index: &ArchiveIndex,
    ) -> Result<Table> {
        let new_location = MetadataLocation::from_str(old_location)?
            .with_next_version()
            .with_new_metadata(&metadata);
        metadata.write_to(&self.file_io, &new_location).await?;
        let new_location = new_location.to_string();
        let ns = ns_key(ident.namespace());
        let mut tx = self.pool.begin().await.map_err(sql_error)?;
        let swapped = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2
             WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5
               AND metadata_location = $2",
        )
        .bind(&new_location)
        .bind(old_location)
        .bind(CATALOG_NAME)
        .bind(&ns)
        .bind(ident.name())
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?
        .rows_affected();
        if swapped != 1 {
            drop(tx);
            // Best effort: the metadata file was never published.
            let _ = self.file_io.delete(&new_location).await;
            return Err(Error::new(
                ErrorKind::CatalogCommitConflicts,
                format!("table {ident} changed during the commit"),
            )
            .with_retryable(true));
        }
        for path in &index.removed_files {
            sqlx::query(
                "DELETE FROM lake_files WHERE table_namespace = $1 AND table_name = $2 AND file_path = $3",
            )
            .bind(&ns)
            .bind(ident.name())
            .bind(path)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
            sqlx::query(
                "INSERT INTO lake_garbage (table_namespace, table_name, file_path, removed_at_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (table_namespace, table_name, file_path)
                 DO UPDATE SET removed_at_ms = excluded.removed_at_ms",
            )
            .bind(&ns)
            .bind(ident.name())
            .bind(path)
            .bind(index.removed_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        }
        for r in &index.ranges {
            sqlx::query(
                "INSERT INTO lake_files (table_namespace, table_name, partition, first_offset,
                     last_offset, file_path, first_row, row_count)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&ns)
            .bind(ident.name())
            .bind(r.partition as i64)
            .bind(r.first_offset)
            .bind(r.last_offset)
            .bind(&r.file_path)
            .bind(r.first_row)
            .bind(r.row_count)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        }
        for (partition, next) in &index.progress {
            sqlx::query(
                "INSERT INTO lake_progress (table_namespace, table_name, partition, next_offset)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (table_namespace, table_name, partition)
                 DO UPDATE SET next_offset = excluded.next_offset",
            )
            .bind(&ns)
            .bind(ident.name())
            .bind(*partition as i64)
            .bind(*next)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        }
        tx.commit().await.map_err(sql_error)?;
        let table = self.build_table(ident.clone(), new_location, metadata)?;
        self.delete_dropped_metadata(before, old_location, &table)
            .await;
        Ok(table)
    }

    /// Next offset to archive, per partition, for a table.
    pub async fn progress(&self, ident: &TableIdent) -> Result<HashMap<i32, i64>> {
        let rows = sqlx::query(
            "SELECT partition, next_offset FROM lake_progress
             WHERE table_namespace = $1 AND table_name = $2",
        )
        .bind(ns_key(ident.namespace()))
        .bind(ident.name())
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<i64, _>(0) as i32, r.get::<i64, _>(1)))
            .collect())
    }

    /// Data files all of whose rows are below their partition's log start.
    pub async fn files_below(
        &self,
        ident: &TableIdent,
        log_starts: &HashMap<i32, i64>,
    ) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query(
            "SELECT file_path, partition, MAX(last_offset) FROM lake_files
             WHERE table_namespace = $1 AND table_name = $2 GROUP BY file_path, partition",
        )
        .bind(ns_key(ident.namespace()))
        .bind(ident.name())
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        let mut keep = std::collections::HashSet::new();
        let mut all = std::collections::HashSet::new();
        for r in &rows {
            let path: String = r.get(0);
            let partition = r.get::<i64, _>(1) as i32;
            let last: i64 = r.get(2);
            if last >= log_starts.get(&partition).copied().unwrap_or(0) {
                keep.insert(path.clone());
            }
            all.insert(path);
        }
        Ok(all.difference(&keep).cloned().collect())
    }

    /// Takes (and forgets) the removed data files that no snapshot at or
    /// after `oldest_snapshot_ms` refers to.
    pub async fn take_garbage(
        &self,
        ident: &TableIdent,
        oldest_snapshot_ms: i64,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "DELETE FROM lake_garbage
             WHERE table_namespace = $1 AND table_name = $2 AND removed_at_ms <= $3
             RETURNING file_path",
        )
        .bind(ns_key(ident.namespace()))
        .bind(ident.name())
        .bind(oldest_snapshot_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The archived file ranges of one partition that may hold offsets in
    /// `first..=last`.
    pub async fn ranges_overlapping(
        &self,
        ident: &TableIdent,
        partition: i32,
        first: i64,
        last: i64,
    ) -> Result<Vec<FileRange>> {
        let rows = sqlx::query(
            "SELECT partition, first_offset, last_offset, file_path, first_row, row_count
             FROM lake_files
             WHERE table_namespace = $1 AND table_name = $2 AND partition = $3
               AND last_offset >= $4 AND first_offset <= $5
             ORDER BY first_offset",
        )
        .bind(ns_key(ident.namespace()))
        .bind(ident.name())
        .bind(partition as i64)
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        Ok(rows.iter().map(range_from_row).collect())
    }
}

fn range_from_row(r: &sqlx::any::AnyRow) -> FileRange {
    FileRange {
        partition: r.get::<i64, _>(0) as i32,
        first_offset: r.get(1),
        last_offset: r.get(2),
        file_path: r.get(3),
        first_row: r.get(4),
        row_count: r.get(5),
    }
}

fn unsupported(what: &str) -> Error {
    Error::new(
        ErrorKind::FeatureUnsupported,
        format!("{what} is not supported: topic tables follow their topics"),
    )
}

#[async_trait]
impl Catalog for LakeCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        if parent.is_some() {
            return Ok(vec![]);
        }
        let rows = sqlx::query(
            "SELECT namespace FROM iceberg_namespace_properties WHERE catalog_name = $1
             UNION SELECT table_namespace FROM iceberg_tables WHERE catalog_name = $1",
        )
        .bind(CATALOG_NAME)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        rows.iter()
            .map(|r| NamespaceIdent::from_strs(r.get::<String, _>(0).split('.')))
            .collect()
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        if self.namespace_exists(namespace).await? {
            return Err(Error::new(
                ErrorKind::NamespaceAlreadyExists,
                format!("namespace {namespace:?} already exists"),
            ));
        }
        let mut props = properties.clone();
        props.insert("exists".into(), "true".into());
        let mut tx = self.pool.begin().await.map_err(sql_error)?;
        for (k, v) in &props {
            sqlx::query(
                "INSERT INTO iceberg_namespace_properties (catalog_name, namespace, property_key, property_value)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(CATALOG_NAME)
            .bind(ns_key(namespace))
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        }
        tx.commit().await.map_err(sql_error)?;
        Ok(Namespace::with_properties(namespace.clone(), properties))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        if !self.namespace_exists(namespace).await? {
            return Err(Error::new(
                ErrorKind::NamespaceNotFound,
                format!("no namespace {}", ns_key(namespace)),
            ));
        }
        let rows = sqlx::query(
            "SELECT property_key, property_value FROM iceberg_namespace_properties
             WHERE catalog_name = $1 AND namespace = $2 AND property_key <> 'exists'",
        )
        .bind(CATALOG_NAME)
        .bind(ns_key(namespace))
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        let props = rows
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    r.get::<Option<String>, _>(1).unwrap_or_default(),
                )
            })
            .collect();
        Ok(Namespace::with_properties(namespace.clone(), props))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM iceberg_namespace_properties WHERE catalog_name = $1 AND namespace = $2
             UNION SELECT 1 FROM iceberg_tables WHERE catalog_name = $1 AND table_namespace = $2
             LIMIT 1",
        )
        .bind(CATALOG_NAME)
        .bind(ns_key(namespace))
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_error)?;
        Ok(row.is_some())
    }

    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> Result<()> {
        Err(unsupported("updating namespace properties"))
    }

    async fn drop_namespace(&self, _namespace: &NamespaceIdent) -> Result<()> {
        Err(unsupported("dropping a namespace"))
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        let rows = sqlx::query(
            "SELECT table_name FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 ORDER BY table_name",
        )
        .bind(CATALOG_NAME)
        .bind(ns_key(namespace))
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        Ok(rows
            .iter()
            .map(|r| TableIdent::new(namespace.clone(), r.get::<String, _>(0)))
            .collect())
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        mut creation: TableCreation,
    ) -> Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        if self.table_exists(&ident).await? {
            return Err(Error::new(
                ErrorKind::TableAlreadyExists,
                format!("table {ident} already exists"),
            ));
        }
        if !self.namespace_exists(namespace).await? {
            self.create_namespace(namespace, HashMap::new()).await?;
        }
        let location = creation.location.clone().unwrap_or_else(|| {
            format!(
                "{}/{}/{}",
                self.warehouse,
                namespace.as_ref().join("/"),
                creation.name
            )
        });
        creation.location = Some(location.clone());
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(&location, &metadata);
        metadata.write_to(&self.file_io, &metadata_location).await?;
        let metadata_location = metadata_location.to_string();
        sqlx::query(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, iceberg_type)
             VALUES ($1, $2, $3, $4, 'TABLE')",
        )
        .bind(CATALOG_NAME)
        .bind(ns_key(namespace))
        .bind(ident.name())
        .bind(&metadata_location)
        .execute(&self.pool)
        .await
        .map_err(sql_error)?;
        self.build_table(ident, metadata_location, metadata)
    }

    async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        let Some(location) = self.metadata_location(ident).await? else {
            return Err(Error::new(
                ErrorKind::TableNotFound,
                format!("no table {ident}"),
            ));
        };
        let metadata = TableMetadata::read_from(&self.file_io, &location).await?;
        self.build_table(ident.clone(), location, metadata)
    }

    async fn drop_table(&self, ident: &TableIdent) -> Result<()> {
        let ns = ns_key(ident.namespace());
        let mut tx = self.pool.begin().await.map_err(sql_error)?;
        for sql in [
            "DELETE FROM iceberg_tables WHERE catalog_name = $3 AND table_namespace = $1 AND table_name = $2",
            "DELETE FROM lake_files WHERE table_namespace = $1 AND table_name = $2 AND $3 IS NOT NULL",
            "DELETE FROM lake_progress WHERE table_namespace = $1 AND table_name = $2 AND $3 IS NOT NULL",
            "DELETE FROM lake_garbage WHERE table_namespace = $1 AND table_name = $2 AND $3 IS NOT NULL",
        ] {
            sqlx::query(sql)
                .bind(&ns)
                .bind(ident.name())
                .bind(CATALOG_NAME)
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
        }
        tx.commit().await.map_err(sql_error)
    }

    async fn purge_table(&self, ident: &TableIdent) -> Result<()> {
        let location = self
            .load_table(ident)
            .await?
            .metadata()
            .location()
            .to_string();
        self.drop_table(ident).await?;
        self.file_io.delete_prefix(&location).await
    }

    async fn table_exists(&self, ident: &TableIdent) -> Result<bool> {
        Ok(self.metadata_location(ident).await?.is_some())
    }

    async fn rename_table(&self, _src: &TableIdent, _dest: &TableIdent) -> Result<()> {
        Err(unsupported("renaming a table"))
    }

    async fn register_table(
        &self,
        _ident: &TableIdent,
        _metadata_location: String,
    ) -> Result<Table> {
        Err(unsupported("registering a table"))
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.commit_with_index(commit, &ArchiveIndex::default())
            .await
    }
}

/// The catalog as seen by one archiver commit: table updates also record
/// `index`, in the same transaction.
#[derive(Debug)]
pub struct IndexedCommit<'a> {
    pub catalog: &'a LakeCatalog,
    pub index: ArchiveIndex,
}

#[async_trait]
impl Catalog for IndexedCommit<'_> {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.catalog.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        ns: &NamespaceIdent,
        props: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.catalog.create_namespace(ns, props).await
    }
    async fn get_namespace(&self, ns: &NamespaceIdent) -> Result<Namespace> {
        self.catalog.get_namespace(ns).await
    }
    async fn namespace_exists(&self, ns: &NamespaceIdent) -> Result<bool> {
        self.catalog.namespace_exists(ns).await
    }
    async fn update_namespace(
        &self,
        ns: &NamespaceIdent,
        props: HashMap<String, String>,
    ) -> Result<()> {
        self.catalog.update_namespace(ns, props).await
    }
    async fn drop_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        self.catalog.drop_namespace(ns).await
    }
    async fn list_tables(&self, ns: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.catalog.list_tables(ns).await
    }
    async fn create_table(&self, ns: &NamespaceIdent, creation: TableCreation) -> Result<Table> {
        self.catalog.create_table(ns, creation).await
    }
    async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        self.catalog.load_table(ident).await
    }
    async fn drop_table(&self, ident: &TableIdent) -> Result<()> {
        self.catalog.drop_table(ident).await
    }
    async fn purge_table(&self, ident: &TableIdent) -> Result<()> {
        self.catalog.purge_table(ident).await
    }
    async fn table_exists(&self, ident: &TableIdent) -> Result<bool> {
        self.catalog.table_exists(ident).await
    }
    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.catalog.rename_table(src, dest).await
    }
    async fn register_table(&self, ident: &TableIdent, location: String) -> Result<Table> {
        self.catalog.register_table(ident, location).await
    }
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.catalog.commit_with_index(commit, &self.index).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Lakehouse, Partitioning};

    async fn lakehouse(dir: &std::path::Path) -> Lakehouse {
        let url = format!("sqlite://{}?mode=rwc", dir.join("meta.db").display());
        sqlx::any::install_default_drivers();
        let pool = AnyPool::connect(&url).await.unwrap();
        sqlx::migrate!("../broker/migrations/sqlite")
            .run(&pool)
            .await
            .unwrap();
        let warehouse = format!("file://{}", dir.join("warehouse").display());
        let catalog = LakeCatalog::open(pool, crate::local_file_io(), warehouse)
            .await
            .unwrap();
        Lakehouse::new(catalog, "kafka").unwrap()
    }

    fn metadata_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("warehouse/kafka/t/metadata"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".metadata.json"))
            .count()
    }

    #[tokio::test]
    async fn old_metadata_files_are_deleted_after_commits() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lakehouse(dir.path()).await;
        lake.prepare("t", "id-1", None, None, "none", Partitioning::Day)
            .await
            .unwrap();
        let ident = lake.ident("t");
        lake.catalog()
            .update_metadata(&ident, |b| {
                b.set_properties(HashMap::from([(
                    "write.metadata.previous-versions-max".to_string(),
                    "3".to_string(),
                )]))
            })
            .await
            .unwrap();
        for i in 0..10 {
            lake.catalog()
                .update_metadata(&ident, |b| {
                    b.set_properties(HashMap::from([("n".to_string(), i.to_string())]))
                })
                .await
                .unwrap();
        }
        // The current file plus the three the log keeps.
        assert_eq!(metadata_files(dir.path()), 4);
        let table = lake.catalog().load_table(&ident).await.unwrap();
        assert_eq!(table.metadata().properties().get("n").unwrap(), "9");
    }

    #[tokio::test]
    async fn a_table_left_by_a_deleted_topic_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lakehouse(dir.path()).await;
        let first = lake
            .prepare("t", "id-1", None, None, "none", Partitioning::Day)
            .await
            .unwrap();
        let again = lake
            .prepare("t", "id-1", None, None, "none", Partitioning::Day)
            .await
            .unwrap();
        assert_eq!(first.table.metadata().uuid(), again.table.metadata().uuid());
        let replaced = lake
            .prepare("t", "id-2", None, None, "none", Partitioning::Day)
            .await
            .unwrap();
        assert_ne!(
            first.table.metadata().uuid(),
            replaced.table.metadata().uuid()
        );
        assert_eq!(lake.drop_orphans(&["t"]).await.unwrap(), vec![]);
        assert_eq!(lake.drop_orphans(&[]).await.unwrap(), vec![ident_of(&lake)]);
    }

    fn ident_of(lake: &Lakehouse) -> TableIdent {
        lake.ident("t")
    }
}
