//! Reading stored batches back: from the segment cache or the object store,
//! with broker-assigned offsets written into each batch header.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use sluice_lakehouse::{ArchiveReader, Lakehouse};

use crate::common::KafkaError;
use crate::log::LEADER_EPOCH;
use crate::log::batch;
use crate::store::meta::{BatchLoc, LAKE_SEGMENT, MetaError, MetaStore};
use crate::store::objects::Segments;

/// The stores a batch is read from: the offset index, the segment objects
/// and, for archived batches, the topic tables. The assembled broker
/// provides them; the read path needs nothing else of it.
pub trait Stores: Sync {
    fn meta(&self) -> &MetaStore;
    fn segments(&self) -> &Segments;
    fn lake(&self) -> &LakeReader;
}

/// Reads archived batches back from the topic tables' Parquet files.
pub struct LakeReader {
    lake: Arc<Lakehouse>,
    archive: ArchiveReader,
    names: moka::future::Cache<i64, String>,
}

impl LakeReader {
    /// The topic tables.
    pub fn lakehouse(&self) -> &Arc<Lakehouse> {
        &self.lake
    }

    pub fn new(lake: Arc<Lakehouse>, cache_bytes: u64) -> LakeReader {
        LakeReader {
            archive: ArchiveReader::new(lake.catalog().clone(), cache_bytes),
            lake,
            names: moka::future::Cache::new(100_000),
        }
    }
}

fn storage_error(what: &str, e: impl std::fmt::Display) -> KafkaError {
    tracing::error!(error = %e, "{what}");
    KafkaError::new(ResponseError::KafkaStorageError, format!("{what}: {e}"))
}

/// Rebuilds an archived batch from the table: the same offsets (gaps
/// included), timestamps, keys, values and headers, in one uncompressed
/// batch without producer state.
async fn append_archived(
    stores: &(impl Stores + ?Sized),
    loc: &BatchLoc,
    out: &mut Vec<u8>,
) -> Result<(), KafkaError> {
    let reader = stores.lake();
    let topic_id = loc.topic_id;
    let name = reader
        .names
        .try_get_with(topic_id, async {
            stores
                .meta()
                .topic_name(topic_id)
                .await?
                .ok_or_else(|| MetaError::UnknownTopic(format!("id {topic_id}")))
        })
        .await
        .map_err(|e| storage_error("cannot resolve an archived batch's topic", e))?;
    let table = reader.lake.ident(&name);
    let records = reader
        .archive
        .records(&table, loc.partition, loc.base_offset, loc.last_offset)
        .await
        .map_err(|e| storage_error("cannot read archived records", e))?;
    let base_ts = records
        .first()
        .map_or(loc.max_timestamp, |r| r.timestamp_ms);
    let mut section = Vec::new();
    for r in &records {
        let headers: Vec<batch::HeaderView<'_>> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_deref()))
            .collect();
        batch::encode_record(
            &mut section,
            r.timestamp_ms - base_ts,
            (r.offset - loc.base_offset) as i32,
            r.key.as_deref(),
            r.value.as_deref(),
            &headers,
        );
    }
    let mut header = batch::BatchHeader {
        batch_length: 0,
        attributes: 0,
        last_offset_delta: (loc.last_offset - loc.base_offset) as i32,
        base_timestamp: base_ts,
        max_timestamp: records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(loc.max_timestamp),
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: records.len() as i32,
    };
    let bytes = batch::encode_batch(&mut header, &section)
        .map_err(|e| storage_error("cannot rebuild an archived batch", e))?;
    batch::patch_into(out, &bytes, loc.base_offset, LEADER_EPOCH);
    Ok(())
}

/// Appends the stored batch to `out`, ready to send to a consumer.
pub async fn append_batch(
    stores: &(impl Stores + ?Sized),
    loc: &BatchLoc,
    out: &mut Vec<u8>,
) -> Result<(), KafkaError> {
    if loc.segment.key == LAKE_SEGMENT {
        return append_archived(stores, loc, out).await;
    }
    let segment = stores.segments().get(&loc.segment).await.map_err(|e| {
        tracing::error!(segment = %loc.segment.key, error = %e, "cannot read segment");
        KafkaError::new(
            ResponseError::KafkaStorageError,
            format!("cannot read stored data: {e}"),
        )
    })?;
    let start = loc.pos as usize;
    let end = start + loc.len as usize;
    if end > segment.len() {
        tracing::error!(segment = %loc.segment.key, "segment is shorter than its index says");
        return Err(KafkaError::new(
            ResponseError::KafkaStorageError,
            "stored segment is truncated",
        ));
    }
    batch::patch_into(out, &segment[start..end], loc.base_offset, LEADER_EPOCH);
    Ok(())
}

/// Decodes every data record of one stored batch (decompressing as
/// needed); control records are left out.
pub async fn records_of(
    stores: &(impl Stores + ?Sized),
    loc: &BatchLoc,
) -> Result<Vec<Record>, KafkaError> {
    let mut buf = Vec::with_capacity(loc.len as usize);
    append_batch(stores, loc, &mut buf).await?;
    let mut bytes = Bytes::from(buf);
    RecordBatchDecoder::decode(&mut bytes)
        .map(|set| set.records.into_iter().filter(|r| !r.control).collect())
        .map_err(|e| {
            KafkaError::new(
                ResponseError::CorruptMessage,
                format!("cannot decode stored batch: {e}"),
            )
        })
}
