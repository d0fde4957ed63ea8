//! Reading archived records back from the table's Parquet files, for Kafka
//! fetches of offsets whose segments are gone (the table is the one copy).
//!
//! The offset index (`lake_files`) says which rows of which file hold a
//! partition's offsets; the Kafka columns of a file are decoded once and
//! kept in a size-bounded cache, so a consumer reading forward through a
//! file decodes it once.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use iceberg::{Error, ErrorKind, Result, TableIdent};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::catalog::LakeCatalog;
use crate::layout;

/// One record as stored: every byte a consumer sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// The Kafka columns of one data file.
struct FileRows {
    batches: Vec<RecordBatch>,
    bytes: usize,
}

pub struct ArchiveReader {
    catalog: LakeCatalog,
    files: moka::future::Cache<String, Arc<FileRows>>,
}

const KAFKA_COLUMNS: [&str; 6] = [
    layout::COL_PARTITION,
    layout::COL_OFFSET,
    layout::COL_TIMESTAMP,
    layout::COL_KEY,
    layout::COL_HEADERS,
    layout::COL_VALUE_BYTES,
];

impl ArchiveReader {
    pub fn new(catalog: LakeCatalog, cache_bytes: u64) -> ArchiveReader {
        ArchiveReader {
            catalog,
            files: moka::future::Cache::builder()
                .weigher(|_: &String, f: &Arc<FileRows>| u32::try_from(f.bytes).unwrap_or(u32::MAX))
                .max_capacity(cache_bytes)
                .build(),
        }
    }

    /// The records of `partition` with offsets `first..=last`, in offset
    /// order (offsets removed at produce time are simply absent).
    pub async fn records(
        &self,
        table: &TableIdent,
        partition: i32,
        first: i64,
        last: i64,
    ) -> Result<Vec<ArchivedRecord>> {
        let ranges = self
            .catalog
            .ranges_overlapping(table, partition, first, last)
            .await?;
        let mut out = Vec::new();
        for range in ranges {
            let file = self.file(&range.file_path).await?;
            let mut row_base = 0i64;
            for batch in &file.batches {
                let rows = batch.num_rows() as i64;
                let lo = range.first_row.max(row_base);
                let hi = (range.first_row + range.row_count).min(row_base + rows);
                for row in lo..hi {
                    let i = (row - row_base) as usize;
                    push_row(batch, i, partition, first, last, &mut out)?;
                }
                row_base += rows;
            }
        }
        out.sort_by_key(|r| r.offset);
        out.dedup_by_key(|r| r.offset);
        Ok(out)
    }

    async fn file(&self, path: &str) -> Result<Arc<FileRows>> {
        let io = self.catalog.file_io().clone();
        self.files
            .try_get_with(path.to_string(), async move {
                let data = io.new_input(path)?.read().await?;
                decode_file(data).map(Arc::new)
            })
            .await
            .map_err(|e: Arc<Error>| Error::new(e.kind(), e.to_string()))
    }
}

fn decode_file(data: Bytes) -> Result<FileRows> {
    let bad = |e: parquet::errors::ParquetError| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("cannot read table file: {e}"),
        )
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(bad)?;
    let schema = builder.parquet_schema();
    let roots: Vec<usize> = {
        let arrow = builder.schema();
        KAFKA_COLUMNS
            .iter()
            .map(|c| {
                arrow.index_of(c).map_err(|_| {
                    Error::new(
                        ErrorKind::DataInvalid,
                        format!("table file lacks column {c}"),
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    let mask = ProjectionMask::roots(schema, roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(bad)?;
    let mut batches = Vec::new();
    let mut bytes = 0;
    for batch in reader {
        let batch = batch.map_err(|e| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("cannot decode table file: {e}"),
            )
        })?;
        bytes += batch.get_array_memory_size();
        batches.push(batch);
    }
    Ok(FileRows { batches, bytes })
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Arc<dyn Array>> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::new(ErrorKind::DataInvalid, format!("no column {name}")))
}

fn binary(array: &dyn Array, i: usize) -> Option<Bytes> {
    if array.is_null(i) {
        return None;
    }
    let bytes = match array.data_type() {
        arrow_schema::DataType::LargeBinary => array.as_binary::<i64>().value(i),
        _ => array.as_binary::<i32>().value(i),
    };
    Some(Bytes::copy_from_slice(bytes))
}

fn push_row(
    batch: &RecordBatch,
    i: usize,
    partition: i32,
    first: i64,
    last: i64,
    out: &mut Vec<ArchivedRecord>,
) -> Result<()> {
    let p = column(batch, layout::COL_PARTITION)?.as_primitive::<Int32Type>();
    let o = column(batch, layout::COL_OFFSET)?.as_primitive::<Int64Type>();
    let offset = o.value(i);
    if p.value(i) != partition || offset < first || offset > last {
        return Ok(());
    }
    let ts = column(batch, layout::COL_TIMESTAMP)?.as_primitive::<TimestampMicrosecondType>();
    let headers_col = column(batch, layout::COL_HEADERS)?.as_list::<i32>();
    let mut headers = Vec::new();
    if headers_col.is_valid(i) {
        let entries = headers_col.value(i);
        let entries = entries.as_struct();
        let keys = entries.column(0).as_string::<i32>();
        let values = entries.column(1);
        for h in 0..entries.len() {
            headers.push((
                Bytes::copy_from_slice(keys.value(h).as_bytes()),
                binary(values.as_ref(), h),
            ));
        }
    }
    out.push(ArchivedRecord {
        offset,
        timestamp_ms: ts.value(i).div_euclid(1000),
        key: binary(column(batch, layout::COL_KEY)?.as_ref(), i),
        value: binary(column(batch, layout::COL_VALUE_BYTES)?.as_ref(), i),
        headers,
    });
    Ok(())
}
