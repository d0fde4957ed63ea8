//! Dead letters: where a topic in `dlq` validation mode sends the records
//! that fail validation, and how they stay exactly-once with their batch.
//!
//! ```text
//!  produce handler                          flusher (append.rs)
//!  validate the batch ── all valid ───────► stored as produced
//!        │ some invalid
//!        ▼
//!  batch::remove_records: the batch        idempotence check
//!  without them (same header, gaps) ──────► duplicate: answered with the stored
//!  + DeadLetters (the removed records,         batch's offset; dead letters dropped
//!    their reasons, the target topic)       accepted: one metadata transaction
//!                                             1. index the flush (assigns the batch's offsets)
//!                                             2. encode the dead letters with those offsets,
//!                                                write them as a segment of their own
//!                                             3. index that segment in the dead-letter topic
//!                                             4. commit: batch and dead letters visible together
//! ```
//!
//! The dead letters of a batch are therefore stored exactly when the batch
//! is: a retry of a stored batch writes nothing twice, and a failed flush
//! loses neither. They are ordinary records: the original key, value,
//! timestamp and headers, plus the `sluice.dlq.*` headers below.

use bytes::Bytes;

use crate::log::batch::{BatchError, BatchHeader, CheckedBatch, HeaderView, RemovedRecord};

/// The violation text, as reject mode would have returned it.
pub const REASON_HEADER: &str = "sluice.dlq.reason";
/// The topic the record was produced to.
pub const TOPIC_HEADER: &str = "sluice.dlq.topic";
/// Its partition there (decimal).
pub const PARTITION_HEADER: &str = "sluice.dlq.partition";
/// The offset it would have had there (decimal); that offset stays unused.
pub const OFFSET_HEADER: &str = "sluice.dlq.offset";
/// The subject of the schema it failed, when there is one.
pub const SUBJECT_HEADER: &str = "sluice.dlq.schema.subject";

/// The invalid records of one produced batch, bound for a dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    /// Where they go.
    pub topic_id: i64,
    pub partition: i32,
    /// Where they were produced to.
    pub source_topic: String,
    pub source_partition: i32,
    /// Compression codec of the produced batch, used again for theirs.
    pub codec: i16,
    pub records: Vec<DeadRecord>,
}

#[derive(Debug, Clone)]
pub struct DeadRecord {
    pub record: RemovedRecord,
    pub reason: String,
    pub subject: Option<String>,
}

impl DeadLetters {
    /// The dead-letter batch, once the base offset of the batch the records
    /// came from is known. It is not idempotent (no producer id): it is
    /// written only together with that batch.
    pub fn encode(&self, source_base_offset: i64) -> Result<CheckedBatch, BatchError> {
        let count = i32::try_from(self.records.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| BatchError::Invalid("no dead letters to encode".into()))?;
        let timestamps = self.records.iter().map(|d| d.record.timestamp);
        let base_timestamp = timestamps.clone().min().unwrap_or(-1);
        let max_timestamp = timestamps.max().unwrap_or(-1);
        let partition = self.source_partition.to_string();
        let mut section = Vec::new();
        for (delta, dead) in (0i32..).zip(&self.records) {
            let r = &dead.record;
            let offset = (source_base_offset + i64::from(r.offset_delta)).to_string();
            let mut headers: Vec<HeaderView<'_>> = r
                .headers
                .iter()
                .map(|(k, v)| (&k[..], v.as_deref()))
                .collect();
            headers.push((REASON_HEADER.as_bytes(), Some(dead.reason.as_bytes())));
            headers.push((TOPIC_HEADER.as_bytes(), Some(self.source_topic.as_bytes())));
            headers.push((PARTITION_HEADER.as_bytes(), Some(partition.as_bytes())));
            headers.push((OFFSET_HEADER.as_bytes(), Some(offset.as_bytes())));
            if let Some(subject) = &dead.subject {
                headers.push((SUBJECT_HEADER.as_bytes(), Some(subject.as_bytes())));
            }
            crate::log::batch::encode_record(
                &mut section,
                r.timestamp.saturating_sub(base_timestamp),
                delta,
                r.key.as_deref(),
                r.value.as_deref(),
                &headers,
            );
        }
        let mut header = BatchHeader {
            batch_length: 0,
            attributes: self.codec,
            last_offset_delta: count - 1,
            base_timestamp,
            max_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: count,
        };
        let bytes: Bytes = crate::log::batch::encode_batch(&mut header, &section)?;
        Ok(CheckedBatch { header, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_keep_the_record_and_say_why() {
        let record = |index: usize, delta: i32, key: &'static str| RemovedRecord {
            index,
            offset_delta: delta,
            timestamp: 5000 + i64::from(delta),
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from_static(b"\x00bad")),
            headers: vec![
                (Bytes::from("trace"), Some(Bytes::from("t1"))),
                (Bytes::from("trace"), None),
            ],
        };
        let letters = DeadLetters {
            topic_id: 9,
            partition: 0,
            source_topic: "orders".into(),
            source_partition: 3,
            codec: 2,
            records: vec![
                DeadRecord {
                    record: record(1, 1, "a"),
                    reason: "invalid value: email: value must be a valid email address".into(),
                    subject: Some("orders-value".into()),
                },
                DeadRecord {
                    record: record(4, 4, "b"),
                    reason: "value is null".into(),
                    subject: None,
                },
            ],
        };
        let batch = letters.encode(40).unwrap();
        assert_eq!(batch.header.record_count, 2);
        assert_eq!(batch.header.last_offset_delta, 1);
        assert_eq!(batch.header.producer_id, -1);
        assert_eq!(batch.header.compression(), 2);
        assert_eq!(
            (batch.header.base_timestamp, batch.header.max_timestamp),
            (5001, 5004)
        );
        let mut served = Vec::new();
        crate::log::batch::patch_into(&mut served, &batch.bytes, 0, 0);
        let records = kafka_protocol::records::RecordBatchDecoder::decode(&mut Bytes::from(served))
            .unwrap()
            .records;
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].key.as_deref(), Some(&b"a"[..]));
        assert_eq!(records[0].value.as_deref(), Some(&b"\x00bad"[..]));
        assert_eq!(records[1].timestamp, 5004);
        // The decoder keeps one value per header name, so the raw headers are
        // read back with the broker's own parser.
        let section = crate::log::batch::records_section(&batch.bytes, &batch.header).unwrap();
        let views: Vec<_> = crate::log::batch::Records::new(&section, 2)
            .map(|r| r.unwrap().headers().unwrap())
            .collect();
        let text = |h: &[HeaderView<'_>]| -> Vec<(String, Option<String>)> {
            h.iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        v.map(|v| String::from_utf8_lossy(v).into_owned()),
                    )
                })
                .collect()
        };
        let owned = |pairs: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
                .collect()
        };
        assert_eq!(
            text(&views[0]),
            owned(&[
                ("trace", Some("t1")),
                ("trace", None),
                (
                    REASON_HEADER,
                    Some("invalid value: email: value must be a valid email address")
                ),
                (TOPIC_HEADER, Some("orders")),
                (PARTITION_HEADER, Some("3")),
                (OFFSET_HEADER, Some("41")),
                (SUBJECT_HEADER, Some("orders-value")),
            ])
        );
        assert_eq!(text(&views[1])[5], owned(&[(OFFSET_HEADER, Some("44"))])[0]);
        assert_eq!(views[1].len(), 6, "no subject header when none is known");
    }
}
