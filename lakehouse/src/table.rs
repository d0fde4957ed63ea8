//! One Iceberg table per topic: creating it, evolving its schema with the
//! topic's subject, and appending archived records as Parquet files.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use iceberg::spec::{
    DataFile, DataFileFormat, NestedField, PrimitiveType, Schema, Transform, Type,
    UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::catalog::{ArchiveIndex, FileRange, IndexedCommit, LakeCatalog};
use crate::layout::{self, FieldIds, Versioned};
use crate::rows::{Formats, KafkaRow, MessageFormat, Skipped, to_record_batch};

/// Table property naming what the table's layout was derived from (the
/// subject's schema id and the partitioning, or `none`), so a new schema
/// version or partitioning triggers evolution.
pub const SOURCE_SCHEMA_PROPERTY: &str = "sluice.layout-source";

/// How a topic table is partitioned: by a time transform of
/// `kafka_timestamp`, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    None,
    Year,
    Month,
    Day,
    Hour,
}

impl Partitioning {
    /// Parses the topic config value (`day`, `hour`, `month`, `year`, `none`).
    pub fn parse(value: &str) -> Result<Partitioning, String> {
        Ok(match value {
            "none" => Partitioning::None,
            "year" => Partitioning::Year,
            "month" => Partitioning::Month,
            "day" => Partitioning::Day,
            "hour" => Partitioning::Hour,
            other => {
                return Err(format!(
                    "unknown table partitioning '{other}'; use day, hour, month, year or none"
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Partitioning::None => "none",
            Partitioning::Year => "year",
            Partitioning::Month => "month",
            Partitioning::Day => "day",
            Partitioning::Hour => "hour",
        }
    }

    fn spec(self) -> iceberg::Result<UnboundPartitionSpec> {
        let transform = match self {
            Partitioning::None => return Ok(UnboundPartitionSpec::builder().build()),
            Partitioning::Year => Transform::Year,
            Partitioning::Month => Transform::Month,
            Partitioning::Day => Transform::Day,
            Partitioning::Hour => Transform::Hour,
        };
        Ok(UnboundPartitionSpec::builder()
            .add_partition_field(
                layout::ID_TIMESTAMP,
                format!("kafka_timestamp_{}", self.name()),
                transform,
            )?
            .build())
    }
}
/// Table property naming the Kafka topic the table holds.
pub const TOPIC_PROPERTY: &str = "sluice.topic";
/// Table property: the full name of the Protobuf message whose fields the
/// `value` column holds. Once set it stays, so that the columns do not
/// change with the records that happen to be archived next.
pub const VALUE_MESSAGE_PROPERTY: &str = "sluice.value-message";
/// Table property holding the topic's id: a table left by a deleted topic
/// of the same name is replaced, not appended to.
pub const TOPIC_ID_PROPERTY: &str = "sluice.topic-id";
/// Table property: the newest subject version whose message the table's
/// columns have taken in.
pub const VALUE_VERSION_PROPERTY: &str = "sluice.value-schema-version";
/// Table property: the full name of the Protobuf message whose fields the
/// `key` column holds (topics with a key schema).
pub const KEY_MESSAGE_PROPERTY: &str = "sluice.key-message";
/// Table property: the newest key subject version the `key` column took in.
pub const KEY_VERSION_PROPERTY: &str = "sluice.key-schema-version";
/// Snapshot summary key listing the offsets a commit added
/// (`partition:first-last,…`).
pub const OFFSETS_SUMMARY: &str = "sluice.offsets";

/// The table name of a topic: Kafka allows `.` and `-` in topic names,
/// which SQL engines would read as separators or operators, so both become
/// `_` (Kafka already refuses topics whose names differ only in `.` vs `_`).
pub fn table_name(topic: &str) -> String {
    topic.replace(['.', '-'], "_")
}

/// The subject versions whose message a table's `column` (value or key)
/// still has to take in, oldest first: those after the newest one it took
/// in (`version_property`). A table without the column yet takes in every
/// version; one whose columns came from a single version (before versions
/// were recorded) starts from the latest. Always at least the latest (a
/// subject deleted and registered anew starts its versions again).
fn versions_to_take<'a>(
    format: &'a MessageFormat,
    taken: Option<&String>,
    has_column: bool,
) -> Vec<Versioned<'a>> {
    let taken = taken.and_then(|v| v.parse::<i32>().ok());
    let after = match taken {
        Some(v) => v,
        None if !has_column => i32::MIN,
        None => format.schema_version - 1,
    };
    let steps: Vec<_> = format
        .history
        .iter()
        .filter(|(v, _)| *v > after && *v <= format.schema_version)
        .map(|(version, message)| Versioned {
            message,
            version: *version,
        })
        .collect();
    if steps.last().map(|s| s.version) == Some(format.schema_version) {
        steps
    } else {
        vec![Versioned {
            message: &format.message,
            version: format.schema_version,
        }]
    }
}

/// A topic's table and the layout its rows are written in.
#[derive(Debug, Clone)]
pub struct TopicTable {
    pub table: Table,
    /// How values decode into the `value` column (none without a schema).
    pub value_format: Option<MessageFormat>,
    /// How keys decode into the `key` column (none without a key schema).
    pub key_format: Option<MessageFormat>,
}

impl TopicTable {
    fn formats(&self) -> Formats<'_> {
        Formats {
            value: self.value_format.as_ref(),
            key: self.key_format.as_ref(),
        }
    }

    pub(crate) fn with_table(&self, table: Table) -> TopicTable {
        TopicTable {
            table,
            value_format: self.value_format.clone(),
            key_format: self.key_format.clone(),
        }
    }
}

pub struct Lakehouse {
    catalog: LakeCatalog,
    namespace: NamespaceIdent,
}

impl Lakehouse {
    pub fn new(catalog: LakeCatalog, namespace: &str) -> iceberg::Result<Lakehouse> {
        Ok(Lakehouse {
            catalog,
            namespace: NamespaceIdent::from_strs(namespace.split('.'))?,
        })
    }

    pub fn catalog(&self) -> &LakeCatalog {
        &self.catalog
    }

    pub fn namespace(&self) -> &NamespaceIdent {
        &self.namespace
    }

    pub fn ident(&self, topic: &str) -> TableIdent {
        TableIdent::new(self.namespace.clone(), table_name(topic))
    }

    /// Loads the topic's table, creating it or evolving its schema and
    /// partition spec so that it matches the value and key formats
    /// (identified by `source`, e.g. the subjects' latest schema ids) and
    /// `partitioning`. `topic_id` tells apart topics that reuse a name.
    pub async fn prepare(
        &self,
        topic: &str,
        topic_id: &str,
        value_format: Option<MessageFormat>,
        key_format: Option<MessageFormat>,
        source: &str,
        partitioning: Partitioning,
    ) -> iceberg::Result<TopicTable> {
        let source = &format!("{source}|{}", partitioning.name());
        let ident = self.ident(topic);
        let mut existing = None;
        if self.catalog.table_exists(&ident).await? {
            let table = self.catalog.load_table(&ident).await?;
            let owner = table.metadata().properties().get(TOPIC_ID_PROPERTY);
            if owner.map(String::as_str) == Some(topic_id) {
                existing = Some(table);
            } else {
                tracing::info!(topic, table = %ident, "replacing the table of a deleted topic with the same name");
                self.catalog.purge_table(&ident).await?;
            }
        }
        let table = match existing {
            Some(t) => t,
            None => self.create(topic, topic_id, &ident, partitioning).await?,
        };
        let props = table.metadata().properties();
        let prepared = TopicTable {
            table: table.clone(),
            value_format,
            key_format,
        };
        if props.get(SOURCE_SCHEMA_PROPERTY).map(String::as_str) == Some(source) {
            return Ok(prepared);
        }
        // New schema source: derive the columns again, keeping ids by path.
        let invalid = |e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e);
        let mut ids =
            FieldIds::from_properties(props, table.metadata().last_column_id()).map_err(invalid)?;
        let mut schema = table.metadata().current_schema().as_ref().clone();
        let mut conflicts = Vec::new();
        // Each side takes in its versions in turn; the other side's column
        // stays as it is meanwhile.
        let value_steps = prepared.value_format.as_ref().map(|f| {
            let has = schema.field_by_id(layout::ID_VALUE).is_some();
            versions_to_take(f, props.get(VALUE_VERSION_PROPERTY), has)
        });
        let key_steps = prepared.key_format.as_ref().map(|f| {
            let has = schema.field_by_name(layout::COL_KEY_FIELDS).is_some();
            versions_to_take(f, props.get(KEY_VERSION_PROPERTY), has)
        });
        let steps = value_steps
            .into_iter()
            .flatten()
            .map(|v| ("value", Some(v), None))
            .chain(
                key_steps
                    .into_iter()
                    .flatten()
                    .map(|k| ("key", None, Some(k))),
            )
            .collect::<Vec<_>>();
        if steps.is_empty() {
            schema = layout::evolve_schema(None, None, &mut ids, Some(&schema))
                .map_err(invalid)?
                .0;
        }
        for (side, value, key) in steps {
            let version = value.or(key).map(|v| v.version).unwrap_or_default();
            let (next, notes) =
                layout::evolve_schema(value, key, &mut ids, Some(&schema)).map_err(invalid)?;
            schema = next;
            conflicts.extend(
                notes
                    .into_iter()
                    .map(|n| format!("{side} schema version {version}: {n}")),
            );
        }
        for conflict in &conflicts {
            tracing::warn!(topic, table = %ident, %conflict, "incompatible schema change");
            metrics::counter!("sluice_table_incompatible_changes_total", "topic" => topic.to_owned())
                .increment(1);
        }
        let mut properties: HashMap<String, String> = HashMap::from(ids.to_properties());
        properties.insert(SOURCE_SCHEMA_PROPERTY.to_string(), source.to_string());
        for (format, message_property, version_property) in [
            (
                &prepared.value_format,
                VALUE_MESSAGE_PROPERTY,
                VALUE_VERSION_PROPERTY,
            ),
            (
                &prepared.key_format,
                KEY_MESSAGE_PROPERTY,
                KEY_VERSION_PROPERTY,
            ),
        ] {
            if let Some(format) = format {
                properties.insert(
                    message_property.to_string(),
                    format.message.full_name().to_string(),
                );
                properties.insert(
                    version_property.to_string(),
                    format.schema_version.to_string(),
                );
            }
        }
        let spec = partitioning.spec()?;
        let same_spec = {
            let current = table.metadata().default_partition_spec();
            current.fields().len() == spec.fields().len()
                && current
                    .fields()
                    .iter()
                    .zip(spec.fields())
                    .all(|(a, b)| a.source_id == b.source_id && a.transform == b.transform)
        };
        let table = self
            .catalog
            .update_metadata(&ident, |builder| {
                let builder = builder
                    .add_current_schema(schema)?
                    .set_properties(properties)?;
                if same_spec {
                    Ok(builder)
                } else {
                    builder.add_default_partition_spec(spec)
                }
            })
            .await?;
        tracing::info!(topic, table = %ident, source, "table schema updated");
        Ok(prepared.with_table(table))
    }

    /// The topic's table as it is now, if it exists (for maintenance; the
    /// value format is not needed there).
    pub async fn load(&self, topic: &str) -> iceberg::Result<Option<TopicTable>> {
        let ident = self.ident(topic);
        if !self.catalog.table_exists(&ident).await? {
            return Ok(None);
        }
        Ok(Some(TopicTable {
            table: self.catalog.load_table(&ident).await?,
            value_format: None,
            key_format: None,
        }))
    }

    /// The id of the topic whose records the table `topic` maps to holds,
    /// if that table exists.
    pub async fn table_topic_id(&self, topic: &str) -> iceberg::Result<Option<String>> {
        let ident = self.ident(topic);
        if !self.catalog.table_exists(&ident).await? {
            return Ok(None);
        }
        let table = self.catalog.load_table(&ident).await?;
        Ok(table
            .metadata()
            .properties()
            .get(TOPIC_ID_PROPERTY)
            .cloned())
    }

    /// Drops the tables (and their files) of topics that no longer exist,
    /// as deleting a Kafka topic deletes its data. Returns the dropped names.
    pub async fn drop_orphans(&self, live_topics: &[&str]) -> iceberg::Result<Vec<TableIdent>> {
        if !self.catalog.namespace_exists(&self.namespace).await? {
            return Ok(vec![]);
        }
        let live: std::collections::HashSet<String> =
            live_topics.iter().map(|t| table_name(t)).collect();
        let mut dropped = Vec::new();
        for ident in self.catalog.list_tables(&self.namespace).await? {
            if !live.contains(ident.name()) {
                self.catalog.purge_table(&ident).await?;
                tracing::info!(table = %ident, "dropped the table of a deleted topic");
                dropped.push(ident);
            }
        }
        Ok(dropped)
    }

    async fn create(
        &self,
        topic: &str,
        topic_id: &str,
        ident: &TableIdent,
        partitioning: Partitioning,
    ) -> iceberg::Result<Table> {
        // Created with the three required Kafka columns only; `prepare`
        // then adds the full layout with its own field ids.
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::required(
                    layout::ID_PARTITION,
                    layout::COL_PARTITION,
                    Type::Primitive(PrimitiveType::Int),
                )
                .into(),
                NestedField::required(
                    layout::ID_OFFSET,
                    layout::COL_OFFSET,
                    Type::Primitive(PrimitiveType::Long),
                )
                .into(),
                NestedField::required(
                    layout::ID_TIMESTAMP,
                    layout::COL_TIMESTAMP,
                    Type::Primitive(PrimitiveType::Timestamptz),
                )
                .into(),
            ])
            .build()?;
        let spec = partitioning.spec()?;
        let creation = TableCreation::builder()
            .name(ident.name().to_string())
            .schema(schema)
            .partition_spec(spec)
            .properties(HashMap::from([
                (TOPIC_PROPERTY.to_string(), topic.to_string()),
                (TOPIC_ID_PROPERTY.to_string(), topic_id.to_string()),
                (
                    "write.parquet.compression-codec".to_string(),
                    "zstd".to_string(),
                ),
                (
                    crate::catalog::DELETE_AFTER_COMMIT.to_string(),
                    "true".to_string(),
                ),
            ]))
            .build();
        let table = self.catalog.create_table(&self.namespace, creation).await?;
        tracing::info!(topic, table = %ident, "table created");
        Ok(table)
    }

    /// Writes `rows` (sorted by partition, then offset) as Parquet files and
    /// commits them with a fast append. `progress` is the next offset to
    /// archive per partition after this commit; it is recorded with the
    /// offset index in the same database transaction as the table commit.
    ///
    /// Also returns the values and keys that could not be decoded into
    /// the `value` and `key` columns (kept as bytes in `kafka_value` and
    /// `kafka_key`), for the caller to report.
    pub async fn append(
        &self,
        topic: &TopicTable,
        rows: &[KafkaRow<'_>],
        progress: Vec<(i32, i64)>,
    ) -> iceberg::Result<(TopicTable, Skipped)> {
        let table = &topic.table;
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let arrow_schema = Arc::new(schema_to_arrow_schema(&schema)?);
        let mut ranges = Vec::new();
        let mut data_files: Vec<DataFile> = Vec::new();
        let mut skipped = Skipped::default();
        if !rows.is_empty() {
            let invalid = |e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e);
            let numbers =
                FieldIds::from_properties(metadata.properties(), metadata.last_column_id())
                    .map_err(invalid)?
                    .numbers();
            let (batch, left_out) =
                to_record_batch(&arrow_schema, topic.formats(), &numbers, rows).map_err(invalid)?;
            skipped = left_out;
            for (file, file_ranges) in self.write_files(table, &batch).await? {
                ranges.extend(file_ranges);
                data_files.push(file);
            }
        }
        let summary = offsets_summary(&ranges);
        let index = ArchiveIndex {
            ranges,
            progress,
            ..Default::default()
        };
        let commit = IndexedCommit {
            catalog: &self.catalog,
            index,
        };
        let tx = Transaction::new(table);
        let tx = tx
            .fast_append()
            .add_data_files(data_files)
            .set_snapshot_properties(HashMap::from([(OFFSETS_SUMMARY.to_string(), summary)]))
            .apply(tx)?;
        let table = tx.commit(&commit).await?;
        Ok((topic.with_table(table), skipped))
    }
}

impl Lakehouse {
    /// Writes `batch` (rows in the table's current schema, sorted by Kafka
    /// partition and offset) as Parquet data files, one per table
    /// partition, and returns each with the offsets it holds.
    pub(crate) async fn write_files(
        &self,
        table: &Table,
        batch: &arrow_array::RecordBatch,
    ) -> iceberg::Result<Vec<(DataFile, Vec<FileRange>)>> {
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().clone();
        let splitter =
            RecordBatchPartitionSplitter::try_new_with_computed_values(schema.clone(), spec)?;
        let location = DefaultLocationGenerator::new(metadata)?;
        let names = DefaultFileNameGenerator::new(
            format!("{}", uuid::Uuid::new_v4()),
            None,
            DataFileFormat::Parquet,
        );
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut out = Vec::new();
        for (key, part) in splitter.split(batch)? {
            let parquet = ParquetWriterBuilder::new(props.clone(), schema.clone());
            let rolling = RollingFileWriterBuilder::new(
                parquet,
                usize::MAX,
                table.file_io().clone(),
                location.clone(),
                names.clone(),
            );
            let mut writer = DataFileWriterBuilder::new(rolling).build(Some(key)).await?;
            writer.write(part.clone()).await?;
            let files = writer.close().await?;
            let [file] = <[DataFile; 1]>::try_from(files).map_err(|files| {
                iceberg::Error::new(
                    iceberg::ErrorKind::Unexpected,
                    format!("expected one data file per partition, got {}", files.len()),
                )
            })?;
            let ranges = file_ranges(&part, file.file_path());
            out.push((file, ranges));
        }
        Ok(out)
    }

    /// Expires snapshots older than `older_than_ms` (keeping at least
    /// `retain_last`) and deletes their manifest lists. Data files stay:
    /// topic tables are only appended to, so every data file is still in
    /// the current snapshot.
    pub async fn expire_snapshots(
        &self,
        topic: &TopicTable,
        older_than_ms: i64,
        retain_last: usize,
    ) -> iceberg::Result<TopicTable> {
        let before: HashMap<i64, String> = topic
            .table
            .metadata()
            .snapshots()
            .map(|s| (s.snapshot_id(), s.manifest_list().to_string()))
            .collect();
        let tx = Transaction::new(&topic.table);
        let tx = tx
            .expire_snapshots()
            .expire_older_than_ms(older_than_ms)
            .retain_last(retain_last)
            .apply(tx)?;
        let table = tx.commit(&self.catalog).await?;
        let kept: std::collections::HashSet<i64> = table
            .metadata()
            .snapshots()
            .map(|s| s.snapshot_id())
            .collect();
        let mut expired = 0;
        for (id, manifest_list) in before {
            if !kept.contains(&id) {
                expired += 1;
                if let Err(e) = table.file_io().delete(&manifest_list).await {
                    tracing::debug!(manifest_list, error = %e, "cannot delete an expired manifest list");
                }
            }
        }
        if expired > 0 {
            tracing::debug!(table = %table.identifier(), expired, "snapshots expired");
        }
        // Files removed by compaction or retention go once no remaining
        // snapshot can read them.
        if let Some(oldest) = table.metadata().snapshots().map(|s| s.timestamp_ms()).min() {
            for path in self
                .catalog
                .take_garbage(table.identifier(), oldest)
                .await?
            {
                if let Err(e) = table.file_io().delete(&path).await {
                    tracing::debug!(path, error = %e, "cannot delete a removed data file");
                }
            }
        }
        Ok(topic.with_table(table))
    }
}

/// Per Kafka partition, the offsets and rows one file holds.
fn file_ranges(batch: &arrow_array::RecordBatch, path: &str) -> Vec<FileRange> {
    let (Some(partitions), Some(offsets)) = (
        batch.column_by_name(layout::COL_PARTITION),
        batch.column_by_name(layout::COL_OFFSET),
    ) else {
        return vec![];
    };
    let partitions = partitions.as_primitive::<Int32Type>();
    let offsets = offsets.as_primitive::<Int64Type>();
    let mut ranges: Vec<FileRange> = Vec::new();
    for row in 0..batch.num_rows() {
        let (p, o) = (partitions.value(row), offsets.value(row));
        match ranges.last_mut() {
            Some(r) if r.partition == p => {
                r.last_offset = o;
                r.row_count += 1;
            }
            _ => ranges.push(FileRange {
                partition: p,
                first_offset: o,
                last_offset: o,
                file_path: path.to_string(),
                first_row: row as i64,
                row_count: 1,
            }),
        }
    }
    ranges
}

fn offsets_summary(ranges: &[FileRange]) -> String {
    let mut per_partition: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for r in ranges {
        let e = per_partition
            .entry(r.partition)
            .or_insert((r.first_offset, r.last_offset));
        e.0 = e.0.min(r.first_offset);
        e.1 = e.1.max(r.last_offset);
    }
    per_partition
        .iter()
        .map(|(p, (a, b))| format!("{p}:{a}-{b}"))
        .collect::<Vec<_>>()
        .join(",")
}
