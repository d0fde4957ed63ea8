//! Kafka record batch (magic v2) headers: parsing, checking and patching.
//!
//! The broker keeps each produced batch as the exact bytes the client sent.
//! Only the fields outside the CRC (base offset, partition leader epoch) are
//! rewritten when the batch is served, so compressed batches are never
//! re-encoded and consumers receive byte-for-byte what was produced.

use bytes::{Buf, Bytes};
use kafka_protocol::error::ResponseError;

/// Size of the fixed v2 batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Offset of the first byte covered by the batch CRC (the attributes field).
const CRC_START: usize = 21;

/// The parsed fixed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub batch_length: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    /// The sequence number of the last record, wrapping as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }

    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Why a produced record set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record set is truncated: {0}")]
    Truncated(String),
    #[error("unsupported record batch magic {0}; only magic 2 (Kafka 0.11+) is accepted")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("invalid record batch: {0}")]
    Invalid(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {limit}")]
    TooLarge { size: usize, limit: usize },
}

impl BatchError {
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
            BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
            BatchError::Invalid(_) => ResponseError::InvalidRecord,
            BatchError::Truncated(_) | BatchError::CrcMismatch { .. } => {
                ResponseError::CorruptMessage
            }
        }
    }
}

/// Parses the header of the batch at the start of `buf` without checking the CRC.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Truncated(format!(
            "{} bytes is shorter than a batch header",
            buf.len()
        )));
    }
    let mut b = &buf[8..];
    let batch_length = b.get_i32();
    let _leader_epoch = b.get_i32();
    let magic = b.get_i8();
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let _crc = b.get_u32();
    let header = BatchHeader {
        batch_length,
        attributes: b.get_i16(),
        last_offset_delta: b.get_i32(),
        base_timestamp: b.get_i64(),
        max_timestamp: b.get_i64(),
        producer_id: b.get_i64(),
        producer_epoch: b.get_i16(),
        base_sequence: b.get_i32(),
        record_count: b.get_i32(),
    };
    if (batch_length as i64) < (HEADER_LEN as i64 - 12) {
        return Err(BatchError::Invalid(format!(
            "batch length {batch_length} is smaller than the header"
        )));
    }
    if header.record_count < 0 || header.last_offset_delta < 0 {
        return Err(BatchError::Invalid(format!(
            "negative record count {} or last offset delta {}",
            header.record_count, header.last_offset_delta
        )));
    }
    if header.record_count > 0 && header.last_offset_delta != header.record_count - 1 {
        // Kafka producers always number records 0..n-1 inside a new batch.
        return Err(BatchError::Invalid(format!(
            "last offset delta {} does not match record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    Ok(header)
}

/// One checked batch within a produced record set.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    pub header: BatchHeader,
    /// The whole batch, from base offset to the end of its last record.
    pub bytes: Bytes,
}

/// Splits a produced record set into batches, verifying each batch's CRC-32C.
///
/// `max_batch_bytes` is the topic's `max.message.bytes`.
pub fn split_and_check(
    records: &Bytes,
    max_batch_bytes: usize,
) -> Result<Vec<CheckedBatch>, BatchError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < 17 {
            return Err(BatchError::Truncated(format!(
                "{} trailing bytes after the last batch",
                rest.len()
            )));
        }
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let header = parse_header(rest)?;
        let total = 12usize + header.batch_length as usize;
        if total > rest.len() {
            return Err(BatchError::Truncated(format!(
                "batch declares {total} bytes but only {} remain",
                rest.len()
            )));
        }
        if total > max_batch_bytes {
            return Err(BatchError::TooLarge {
                size: total,
                limit: max_batch_bytes,
            });
        }
        let expected = u32::from_be_bytes([rest[17], rest[18], rest[19], rest[20]]);
        let actual = crc32c::crc32c(&rest[CRC_START..total]);
        if expected != actual {
            return Err(BatchError::CrcMismatch { expected, actual });
        }
        if header.record_count == 0 {
            return Err(BatchError::Invalid("batch holds no records".into()));
        }
        out.push(CheckedBatch {
            header,
            bytes: records.slice(pos..pos + total),
        });
        pos += total;
    }
    if out.is_empty() {
        return Err(BatchError::Invalid("empty record set".into()));
    }
    Ok(out)
}

/// Writes the broker-assigned base offset and leader epoch into a stored batch.
///
/// Neither field is covered by the CRC, so the batch stays valid.
pub fn patch_into(dst: &mut Vec<u8>, batch: &[u8], base_offset: i64, leader_epoch: i32) {
    let start = dst.len();
    dst.extend_from_slice(batch);
    dst[start..start + 8].copy_from_slice(&base_offset.to_be_bytes());
    dst[start + 12..start + 16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// The records section of a batch (after the 61-byte header), decompressed
/// when the batch is compressed. Uncompressed batches are not copied.
pub fn records_section(batch: &Bytes, header: &BatchHeader) -> Result<Bytes, BatchError> {
    use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
    let mut body = batch.slice(HEADER_LEN.min(batch.len())..);
    let take = |b: &mut Bytes| Ok(std::mem::take(b));
    let out = match header.compression() {
        0 => return Ok(body),
        1 => Gzip::decompress(&mut body, take),
        2 => Snappy::decompress(&mut body, take),
        3 => Lz4::decompress(&mut body, take),
        4 => Zstd::decompress(&mut body, take),
        other => {
            return Err(BatchError::Invalid(format!(
                "unknown compression codec {other}"
            )));
        }
    };
    out.map_err(|e| BatchError::Invalid(format!("cannot decompress the batch: {e}")))
}

/// One record, borrowed from the records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The encoded headers (count, then key/value pairs); see [`headers`].
    pub headers: &'a [u8],
}

/// One record header: key and (nullable) value.
pub type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// Decodes a record's headers section into (key, value) pairs, in order
/// (Kafka allows repeated keys). `None` when the section is malformed.
pub fn headers(mut raw: &[u8]) -> Option<Vec<Header<'_>>> {
    let count = zigzag_varint(&mut raw, 5)?;
    if count < 0 || count as usize > raw.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key = nullable_bytes(&mut raw)?.unwrap_or_default();
        let value = nullable_bytes(&mut raw)?;
        out.push((key, value));
    }
    Some(out)
}

/// Walks the records of an uncompressed records section without building
/// record structs (headers are left encoded).
pub struct Records<'a> {
    buf: &'a [u8],
    left: i32,
}

impl<'a> Records<'a> {
    pub fn new(section: &'a [u8], count: i32) -> Records<'a> {
        Records {
            buf: section,
            left: count.max(0),
        }
    }
}

fn zigzag_varint(buf: &mut &[u8], max_bytes: usize) -> Option<i64> {
    let mut v: u64 = 0;
    for i in 0..max_bytes {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
}

fn nullable_bytes<'a>(buf: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let len = zigzag_varint(buf, 5)?;
    if len < 0 {
        return Some(None);
    }
    let len = len as usize;
    if buf.len() < len {
        return None;
    }
    let (data, rest) = buf.split_at(len);
    *buf = rest;
    Some(Some(data))
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let bad = || {
            Err(BatchError::Invalid(
                "malformed record inside the batch".into(),
            ))
        };
        let Some(len) = zigzag_varint(&mut self.buf, 5) else {
            self.left = 0;
            return Some(bad());
        };
        if len < 0 || len as usize > self.buf.len() {
            self.left = 0;
            return Some(bad());
        }
        let (mut rec, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        let parsed = (|| {
            rec = rec.get(1..)?; // attributes
            let timestamp_delta = zigzag_varint(&mut rec, 10)?;
            let offset_delta = zigzag_varint(&mut rec, 5)? as i32;
            let key = nullable_bytes(&mut rec)?;
            let value = nullable_bytes(&mut rec)?;
            Some(RecordView {
                timestamp_delta,
                offset_delta,
                key,
                value,
                headers: rec,
            })
        })();
        match parsed {
            Some(v) => Some(Ok(v)),
            None => {
                self.left = 0;
                Some(bad())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn encode(n: usize, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 7,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1000 + i as i64,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'x'; 100])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn parses_and_checks_a_batch() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let bytes = encode(10, c);
            let batches = split_and_check(&bytes, 1 << 20).unwrap();
            assert_eq!(batches.len(), 1);
            let h = batches[0].header;
            assert_eq!(h.record_count, 10);
            assert_eq!(h.last_offset_delta, 9);
            assert_eq!(h.max_timestamp, 1009);
            assert_eq!(h.producer_id, 7);
            assert_eq!(h.last_sequence(), 9);
        }
    }

    #[test]
    fn rejects_bad_crc_and_truncation() {
        let bytes = encode(3, Compression::None);
        let mut corrupt = bytes.to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let err = split_and_check(&Bytes::from(corrupt), 1 << 20).unwrap_err();
        assert_eq!(err.kafka_error(), ResponseError::CorruptMessage);

        let truncated = bytes.slice(..bytes.len() - 5);
        let err = split_and_check(&truncated, 1 << 20).unwrap_err();
        assert!(matches!(err, BatchError::Truncated(_)));

        let err = split_and_check(&bytes, 10).unwrap_err();
        assert_eq!(err.kafka_error(), ResponseError::MessageTooLarge);
    }

    #[test]
    fn record_views_match_the_full_decoder() {
        for c in [
            Compression::None,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Gzip,
        ] {
            let bytes = encode(25, c);
            let batch = &split_and_check(&bytes, 1 << 20).unwrap()[0];
            let section = records_section(&batch.bytes, &batch.header).unwrap();
            let views: Vec<_> = Records::new(&section, batch.header.record_count)
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(views.len(), 25);
            assert_eq!(views[3].key, Some(&b"k3"[..]));
            assert_eq!(views[24].value.map(<[u8]>::len), Some(100));
        }
        // Truncated records section: an error, not a panic.
        let bytes = encode(3, Compression::None);
        let batch = &split_and_check(&bytes, 1 << 20).unwrap()[0];
        let section = records_section(&batch.bytes, &batch.header).unwrap();
        let cut = &section[..section.len() - 4];
        assert!(Records::new(cut, 3).any(|r| r.is_err()));
    }

    #[test]
    fn sequence_wraps() {
        let h = BatchHeader {
            batch_length: 0,
            attributes: 0,
            last_offset_delta: 4,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: i32::MAX - 1,
            record_count: 5,
        };
        assert_eq!(h.last_sequence(), 2);
    }

    #[test]
    fn patching_keeps_crc_valid() {
        let bytes = encode(2, Compression::None);
        let mut out = Vec::new();
        patch_into(&mut out, &bytes, 42, 0);
        let again = split_and_check(&Bytes::from(out.clone()), 1 << 20).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(i64::from_be_bytes(out[..8].try_into().unwrap()), 42);
    }
}
