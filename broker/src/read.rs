//! Reading stored batches back: from the segment cache or the object store,
//! with broker-assigned offsets written into each batch header.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::batch;
use crate::handlers::LEADER_EPOCH;
use crate::meta::BatchLoc;
use crate::state::{Broker, KafkaError};

/// Appends the stored batch to `out`, ready to send to a consumer.
pub async fn append_batch(
    broker: &Broker,
    loc: &BatchLoc,
    out: &mut Vec<u8>,
) -> Result<(), KafkaError> {
    let segment = broker.segments.get(&loc.segment).await.map_err(|e| {
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
pub async fn records_of(broker: &Broker, loc: &BatchLoc) -> Result<Vec<Record>, KafkaError> {
    let mut buf = Vec::with_capacity(loc.len as usize);
    append_batch(broker, loc, &mut buf).await?;
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
