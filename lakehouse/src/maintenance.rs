//! Table maintenance: compaction of small files and deletion of files
//! whose records retention removed.
//!
//! Both produce a snapshot that removes some data files (and, for
//! compaction, adds their rewritten rows as one file), written by hand from
//! the table's manifests: one manifest per partition spec holding every
//! live file (kept files as EXISTING, removed as DELETED, new as ADDED). That
//! also folds the one-manifest-per-commit growth of fast appends back into
//! a single manifest. The offset index is updated in the same metadata
//! transaction as the table commit, so Kafka fetches never see a file that
//! the table no longer has, nor miss one it has. Removed files are deleted
//! from storage once no remaining snapshot refers to them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_ord::sort::{SortColumn, lexsort_to_indices};
use arrow_select::take::take_record_batch;
use bytes::Bytes;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{
    DataFile, ManifestListWriter, ManifestWriterBuilder, Operation, Snapshot, SnapshotReference,
    SnapshotRetention, Summary,
};
use iceberg::{Error, ErrorKind, Result, TableRequirement, TableUpdate};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::catalog::{ArchiveIndex, FileRange};
use crate::layout;
use crate::table::{Lakehouse, TopicTable};

/// A live data file of the current snapshot, with what its manifest entry
/// carries forward.
struct LiveFile {
    spec_id: i32,
    snapshot_id: i64,
    sequence_number: i64,
    file_sequence_number: Option<i64>,
    file: DataFile,
}

/// What one maintenance run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub files_before: usize,
    pub files_removed: usize,
    pub files_added: usize,
    pub rows_rewritten: u64,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::DataInvalid, message)
}

impl Lakehouse {
    async fn live_files(&self, topic: &TopicTable) -> Result<Vec<LiveFile>> {
        let table = &topic.table;
        let Some(snapshot) = table.metadata().current_snapshot() else {
            return Ok(vec![]);
        };
        let list = table.manifest_list_reader(snapshot).load().await?;
        let mut out = Vec::new();
        for manifest_file in list.entries() {
            let manifest = manifest_file.load_manifest(table.file_io()).await?;
            for entry in manifest.entries() {
                if !entry.is_alive() {
                    continue;
                }
                out.push(LiveFile {
                    spec_id: manifest_file.partition_spec_id,
                    snapshot_id: entry.snapshot_id().unwrap_or(snapshot.snapshot_id()),
                    sequence_number: entry.sequence_number().unwrap_or(0),
                    file_sequence_number: entry.file_sequence_number,
                    file: entry.data_file().clone(),
                });
            }
        }
        Ok(out)
    }

    /// Rewrites small files into files of up to `target_bytes`, per table
    /// partition, keeping rows sorted by (Kafka partition, offset).
    pub async fn compact(
        &self,
        topic: &TopicTable,
        target_bytes: u64,
    ) -> Result<(TopicTable, MaintenanceReport)> {
        let live = self.live_files(topic).await?;
        let mut report = MaintenanceReport {
            files_before: live.len(),
            ..Default::default()
        };
        let current_arrow = schema_to_arrow_schema(topic.table.metadata().current_schema())?;
        // Group small files by (spec, partition value).
        let mut groups: BTreeMap<(i32, String), Vec<&LiveFile>> = BTreeMap::new();
        for f in &live {
            if f.file.file_size_in_bytes() < target_bytes / 2 {
                groups
                    .entry((f.spec_id, format!("{:?}", f.file.partition())))
                    .or_default()
                    .push(f);
            }
        }
        let mut removed: HashSet<String> = HashSet::new();
        let mut added = Vec::new();
        let mut ranges = Vec::new();
        for (_, mut files) in groups {
            files.sort_by(|a, b| a.file.file_path().cmp(b.file.file_path()));
            // Take files until the target size; only files in the current
            // schema (older layouts stay as they are).
            let mut batches = Vec::new();
            let mut chosen = Vec::new();
            let mut size = 0;
            for f in files {
                if size >= target_bytes {
                    break;
                }
                let data = topic
                    .table
                    .file_io()
                    .new_input(f.file.file_path())?
                    .read()
                    .await?;
                let (schema_matches, file_batches) = read_file(data, &current_arrow)?;
                if !schema_matches {
                    continue;
                }
                size += f.file.file_size_in_bytes();
                batches.extend(file_batches);
                chosen.push(f);
            }
            if chosen.len() < 2 {
                continue;
            }
            let schema = Arc::new(current_arrow.clone());
            let merged = arrow_select::concat::concat_batches(&schema, &batches)
                .map_err(|e| invalid(format!("cannot merge files: {e}")))?;
            let sorted = sort_by_partition_offset(&merged)?;
            report.rows_rewritten += sorted.num_rows() as u64;
            for (file, file_ranges) in self.write_files(&topic.table, &sorted).await? {
                ranges.extend(file_ranges);
                added.push(file);
            }
            removed.extend(chosen.iter().map(|f| f.file.file_path().to_string()));
        }
        if removed.is_empty() {
            return Ok((topic.clone(), report));
        }
        report.files_removed = removed.len();
        report.files_added = added.len();
        let table = self
            .replace_files(topic, &live, &removed, added, ranges, Operation::Replace)
            .await?;
        Ok((table, report))
    }

    /// Removes the data files all of whose rows are below their Kafka
    /// partition's log start (deleted by retention or DeleteRecords).
    pub async fn drop_expired_files(
        &self,
        topic: &TopicTable,
        log_starts: &HashMap<i32, i64>,
    ) -> Result<(TopicTable, MaintenanceReport)> {
        let ident = topic.table.identifier().clone();
        let expired = self.catalog().files_below(&ident, log_starts).await?;
        let live = self.live_files(topic).await?;
        let removed: HashSet<String> = live
            .iter()
            .map(|f| f.file.file_path().to_string())
            .filter(|p| expired.contains(p))
            .collect();
        let report = MaintenanceReport {
            files_before: live.len(),
            files_removed: removed.len(),
            ..Default::default()
        };
        if removed.is_empty() {
            return Ok((topic.clone(), report));
        }
        let table = self
            .replace_files(topic, &live, &removed, vec![], vec![], Operation::Delete)
            .await?;
        Ok((table, report))
    }

    /// Commits a snapshot in which `removed` files are gone and `added`
    /// ones present, with the index change in the same transaction.
    async fn replace_files(
        &self,
        topic: &TopicTable,
        live: &[LiveFile],
        removed: &HashSet<String>,
        added: Vec<DataFile>,
        ranges: Vec<FileRange>,
        operation: Operation,
    ) -> Result<TopicTable> {
        let table = &topic.table;
        let metadata = table.metadata();
        let parent = metadata
            .current_snapshot()
            .ok_or_else(|| invalid("the table has no snapshot"))?;
        let snapshot_id = loop {
            let id = (uuid::Uuid::new_v4().as_u64_pair().0 & (i64::MAX as u64)) as i64;
            if id != 0 && metadata.snapshot_by_id(id).is_none() {
                break id;
            }
        };
        let sequence_number = metadata.next_sequence_number();
        let schema = metadata.current_schema().clone();
        let location = metadata.location();
        let commit_id = uuid::Uuid::new_v4();

        // One manifest per partition spec.
        let mut by_spec: BTreeMap<i32, Vec<(&LiveFile, bool)>> = BTreeMap::new();
        for f in live {
            by_spec
                .entry(f.spec_id)
                .or_default()
                .push((f, removed.contains(f.file.file_path())));
        }
        let default_spec = metadata.default_partition_spec_id();
        by_spec.entry(default_spec).or_default();
        let mut manifests = Vec::new();
        for (spec_id, files) in by_spec {
            let has_new = spec_id == default_spec && !added.is_empty();
            if files.is_empty() && !has_new {
                continue;
            }
            let spec = metadata
                .partition_spec_by_id(spec_id)
                .ok_or_else(|| invalid(format!("no partition spec {spec_id}")))?;
            let path = format!("{location}/metadata/{commit_id}-m{spec_id}.avro");
            let mut writer = ManifestWriterBuilder::new(
                table.file_io().new_output(&path)?,
                Some(snapshot_id),
                schema.clone(),
                spec.as_ref().clone(),
            )
            .build_v2_data();
            for (f, gone) in files {
                if gone {
                    writer.add_delete_file(
                        f.file.clone(),
                        f.sequence_number,
                        f.file_sequence_number,
                    )?;
                } else {
                    writer.add_existing_file(
                        f.file.clone(),
                        f.snapshot_id,
                        f.sequence_number,
                        f.file_sequence_number,
                    )?;
                }
            }
            if has_new {
                for file in &added {
                    writer.add_file(file.clone(), sequence_number)?;
                }
            }
            manifests.push(writer.write_manifest_file().await?);
        }
        let list_path = format!("{location}/metadata/snap-{snapshot_id}-1-{commit_id}.avro");
        let mut list = ManifestListWriter::v2(
            table.file_io().new_output(&list_path)?.writer().await?,
            snapshot_id,
            Some(parent.snapshot_id()),
            sequence_number,
        );
        list.add_manifests(manifests.into_iter())?;
        list.close().await?;

        let added_rows: u64 = added.iter().map(|f| f.record_count()).sum();
        let removed_rows: u64 = live
            .iter()
            .filter(|f| removed.contains(f.file.file_path()))
            .map(|f| f.file.record_count())
            .sum();
        let total_rows: u64 =
            live.iter().map(|f| f.file.record_count()).sum::<u64>() - removed_rows + added_rows;
        let total_files = live.len() - removed.len() + added.len();
        let now = chrono::Utc::now().timestamp_millis();
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(Some(parent.snapshot_id()))
            .with_sequence_number(sequence_number)
            .with_timestamp_ms(now.max(parent.timestamp_ms()))
            .with_manifest_list(list_path)
            .with_schema_id(schema.schema_id())
            .with_summary(Summary {
                operation,
                additional_properties: HashMap::from([
                    ("added-data-files".into(), added.len().to_string()),
                    ("deleted-data-files".into(), removed.len().to_string()),
                    ("added-records".into(), added_rows.to_string()),
                    ("deleted-records".into(), removed_rows.to_string()),
                    ("total-records".into(), total_rows.to_string()),
                    ("total-data-files".into(), total_files.to_string()),
                ]),
            })
            .build();
        let timestamp = snapshot.timestamp_ms();
        let index = ArchiveIndex {
            ranges,
            progress: vec![],
            removed_files: removed.iter().cloned().collect(),
            removed_at_ms: timestamp,
        };
        let updates = vec![
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: "main".into(),
                reference: SnapshotReference::new(
                    snapshot_id,
                    SnapshotRetention::branch(None, None, None),
                ),
            },
        ];
        let requirements = vec![TableRequirement::RefSnapshotIdMatch {
            r#ref: "main".into(),
            snapshot_id: Some(parent.snapshot_id()),
        }];
        let table = self
            .catalog()
            .commit_changes(table.identifier(), requirements, updates, &index)
            .await?;
        Ok(topic.with_table(table))
    }
}

/// Reads a data file; the flag says whether its columns are the current
/// schema's (only such files are rewritten).
fn read_file(data: Bytes, current: &arrow_schema::Schema) -> Result<(bool, Vec<RecordBatch>)> {
    let bad = |e: parquet::errors::ParquetError| invalid(format!("cannot read table file: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(bad)?;
    let same = builder.schema().fields() == current.fields();
    if !same {
        return Ok((false, vec![]));
    }
    let reader = builder.with_batch_size(8192).build().map_err(bad)?;
    let batches = reader
        .map(|b| b.map_err(|e| invalid(format!("cannot decode table file: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    Ok((true, batches))
}

fn sort_by_partition_offset(batch: &RecordBatch) -> Result<RecordBatch> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| invalid(format!("no column {name}")))
    };
    let keys = [
        SortColumn {
            values: column(layout::COL_PARTITION)?,
            options: None,
        },
        SortColumn {
            values: column(layout::COL_OFFSET)?,
            options: None,
        },
    ];
    let indices =
        lexsort_to_indices(&keys, None).map_err(|e| invalid(format!("cannot sort rows: {e}")))?;
    let sorted = take_record_batch(batch, &indices)
        .map_err(|e| invalid(format!("cannot sort rows: {e}")))?;
    // Sanity: offsets strictly increase within each partition.
    let p = sorted
        .column_by_name(layout::COL_PARTITION)
        .map(|c| c.as_primitive::<Int32Type>().clone());
    let o = sorted
        .column_by_name(layout::COL_OFFSET)
        .map(|c| c.as_primitive::<Int64Type>().clone());
    if let (Some(p), Some(o)) = (p, o) {
        for i in 1..sorted.num_rows() {
            if p.value(i) == p.value(i - 1) && o.value(i) <= o.value(i - 1) {
                return Err(invalid(format!(
                    "partition {} offset {} appears in two files",
                    p.value(i),
                    o.value(i)
                )));
            }
        }
    }
    Ok(sorted)
}
