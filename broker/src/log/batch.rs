//! Kafka record batch (magic v2) headers: parsing, checking and patching.
//!
//! The broker keeps each produced batch as the exact bytes the client sent.
//! Only the fields outside the CRC (base offset, partition leader epoch) are
//! rewritten when the batch is served, so compressed batches are never
//! re-encoded and consumers receive byte-for-byte what was produced.
//!
//! The one exception is a topic in dead-letter mode: a batch holding invalid
//! records is rebuilt without them ([`remove_records`]), the way a compacted
//! Kafka topic rewrites batches. The header (producer, sequence, base
//! timestamp, last offset delta, codec) is kept and each remaining record
//! keeps its bytes and offset delta, so the stored batch has offset gaps where
//! the removed records were and takes the same offsets as the whole batch.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;

/// Size of the fixed v2 batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Offset of the first byte covered by the batch CRC (the attributes field).
const CRC_START: usize = 21;
/// Attribute bits naming the compression codec.
const CODEC_MASK: i16 = 0x07;
/// Attribute bit set when timestamps are the broker's append time.
const LOG_APPEND_TIME: i16 = 0x08;

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
        self.attributes & CODEC_MASK
    }

    /// Offsets the batch takes in its partition: `lastOffsetDelta + 1`. A
    /// batch with records removed takes as many as it did when produced.
    pub fn offset_span(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
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

/// Parses the header of the batch at the start of `buf` without checking the
/// CRC, with the checks a newly produced batch must pass.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_stored_header(buf)?;
    if header.record_count > 0 && header.last_offset_delta != header.record_count - 1 {
        // Kafka producers always number records 0..n-1 inside a new batch.
        return Err(BatchError::Invalid(format!(
            "last offset delta {} does not match record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    Ok(header)
}

/// Parses the header of a stored batch, which may have gaps between its
/// records' offsets (records taken out in dead-letter mode).
pub fn parse_stored_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
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

/// Writes a stored batch for a consumer, with the broker-assigned base
/// offset and leader epoch. Neither field is covered by the CRC, so the
/// batch stays valid.
///
/// A batch left without records ([`remove_records`]) is sent as a control
/// batch instead: its header (offsets, producer) with one transaction-commit
/// marker at its last offset, which consumers skip without showing it to
/// the application. The empty batch itself is skipped by consumers too, but
/// librdkafka takes a fetch answer in which a partition holds no record and
/// no control record for a sign that its fetch size is too small: it
/// doubles the size and, after ten such answers, reports "message size too
/// large" to the application for every further one. A consumer at the end
/// of a topic in dead-letter mode gets such answers whenever a batch had
/// no valid record.
pub fn patch_into(dst: &mut Vec<u8>, batch: &[u8], base_offset: i64, leader_epoch: i32) {
    let start = dst.len();
    if batch.len() == HEADER_LEN && batch[57..61] == [0; 4] {
        empty_as_control_batch(dst, batch);
    } else {
        dst.extend_from_slice(batch);
    }
    dst[start..start + 8].copy_from_slice(&base_offset.to_be_bytes());
    dst[start + 12..start + 16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Attribute bits of a control batch, which Kafka always marks
/// transactional too.
const CONTROL_BATCH: i16 = 0x30;

/// Appends the control-batch form of an empty batch (see [`patch_into`]).
fn empty_as_control_batch(dst: &mut Vec<u8>, batch: &[u8]) {
    let start = dst.len();
    dst.extend_from_slice(batch);
    let last_offset_delta = i32::from_be_bytes([batch[23], batch[24], batch[25], batch[26]]);
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) & !CODEC_MASK | CONTROL_BATCH;
    dst[start + 21..start + 23].copy_from_slice(&attributes.to_be_bytes());
    dst[start + 57..start + 61].copy_from_slice(&1i32.to_be_bytes());
    // The marker as Kafka writes it: key (version 0, type 1 = commit),
    // value (version 0, coordinator epoch 0).
    let mut record = Vec::with_capacity(24);
    encode_record(
        &mut record,
        0,
        last_offset_delta,
        Some(&[0, 0, 0, 1]),
        Some(&[0, 0, 0, 0, 0, 0]),
        &[],
    );
    dst.extend_from_slice(&record);
    let batch_length = (dst.len() - start - 12) as i32;
    dst[start + 8..start + 12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&dst[start + CRC_START..]);
    dst[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
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
    /// The whole encoded record, its length prefix included.
    pub raw: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The header count and headers, read only on demand ([`Self::headers`]).
    pub rest: &'a [u8],
}

/// One record header: key and (nullable) value.
pub type HeaderView<'a> = (&'a [u8], Option<&'a [u8]>);

impl<'a> RecordView<'a> {
    /// The record's headers; an error if they are malformed.
    pub fn headers(&self) -> Result<Vec<HeaderView<'a>>, BatchError> {
        let bad = || BatchError::Invalid("malformed record headers inside the batch".into());
        let mut buf = self.rest;
        let count = zigzag_varint(&mut buf, 5).ok_or_else(bad)?;
        let count = usize::try_from(count).map_err(|_| bad())?;
        // Each header takes at least two bytes, which bounds the allocation.
        if count > buf.len() / 2 {
            return Err(bad());
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let key = nullable_bytes(&mut buf).flatten().ok_or_else(bad)?;
            let value = nullable_bytes(&mut buf).ok_or_else(bad)?;
            out.push((key, value));
        }
        if !buf.is_empty() {
            return Err(bad());
        }
        Ok(out)
    }
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
        let start = self.buf;
        let Some(len) = zigzag_varint(&mut self.buf, 5) else {
            self.left = 0;
            return Some(bad());
        };
        if len < 0 || len as usize > self.buf.len() {
            self.left = 0;
            return Some(bad());
        }
        let prefix = start.len() - self.buf.len();
        let raw = &start[..prefix + len as usize];
        let (mut rec, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        let parsed = (|| {
            rec = rec.get(1..)?; // attributes
            let timestamp_delta = zigzag_varint(&mut rec, 10)?;
            let offset_delta = zigzag_varint(&mut rec, 5)?;
            let key = nullable_bytes(&mut rec)?;
            let value = nullable_bytes(&mut rec)?;
            Some(RecordView {
                raw,
                timestamp_delta,
                offset_delta,
                key,
                value,
                rest: rec,
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

/// A record taken out of a batch, with its absolute offset delta and
/// timestamp; the byte fields are slices of the decompressed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedRecord {
    /// Position of the record in the batch as produced.
    pub index: usize,
    pub offset_delta: i32,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// A batch with some records taken out.
#[derive(Debug, Clone)]
pub struct Split {
    /// The batch holding the remaining records, ready to store.
    pub kept: CheckedBatch,
    pub removed: Vec<RemovedRecord>,
}

/// Rebuilds `batch` without the records at positions `remove` (ascending),
/// as Kafka's log cleaner does: the header keeps its producer id, epoch, base
/// sequence, base timestamp, last offset delta and codec (so sequence
/// checks and offset assignment are as for the whole batch), each remaining
/// record keeps its bytes (and so its offset and timestamp deltas), the
/// records are compressed again with the batch's codec, and the count, max
/// timestamp, length and CRC are computed anew.
///
/// When no record remains the batch is kept empty, as Kafka keeps batches
/// that hold producer state: no records and, as Kafka writes them, no
/// compression (a compressed empty payload is an edge case for clients).
pub fn remove_records(batch: &CheckedBatch, remove: &[usize]) -> Result<Split, BatchError> {
    let header = batch.header;
    let section = records_section(&batch.bytes, &header)?;
    let mut kept = Vec::with_capacity(section.len());
    let mut kept_count = 0i32;
    let mut max_timestamp: Option<i64> = None;
    let mut removed = Vec::with_capacity(remove.len());
    let mut seen = 0usize;
    for (index, record) in Records::new(&section, header.record_count).enumerate() {
        let record = record?;
        seen += 1;
        let offset_delta = i32::try_from(record.offset_delta)
            .ok()
            .filter(|d| (0..=header.last_offset_delta).contains(d))
            .ok_or_else(|| {
                BatchError::Invalid(format!(
                    "record offset delta {} is outside the batch (last offset delta {})",
                    record.offset_delta, header.last_offset_delta
                ))
            })?;
        let timestamp = header.base_timestamp.saturating_add(record.timestamp_delta);
        if remove.binary_search(&index).is_ok() {
            let bytes = |b: &[u8]| section.slice_ref(b);
            removed.push(RemovedRecord {
                index,
                offset_delta,
                timestamp,
                key: record.key.map(bytes),
                value: record.value.map(bytes),
                headers: record
                    .headers()?
                    .into_iter()
                    .map(|(k, v)| (bytes(k), v.map(bytes)))
                    .collect(),
            });
        } else {
            kept.extend_from_slice(record.raw);
            kept_count += 1;
            max_timestamp = Some(max_timestamp.map_or(timestamp, |m| m.max(timestamp)));
        }
    }
    if seen != usize::try_from(header.record_count).unwrap_or(0) {
        return Err(BatchError::Invalid(
            "the batch holds fewer records than its header says".into(),
        ));
    }
    let mut h = header;
    h.record_count = kept_count;
    match max_timestamp {
        None => h.attributes &= !CODEC_MASK,
        Some(max) if h.attributes & LOG_APPEND_TIME == 0 => h.max_timestamp = max,
        Some(_) => {}
    }
    let bytes = encode_batch(&mut h, &kept)?;
    Ok(Split {
        kept: CheckedBatch { header: h, bytes },
        removed,
    })
}

/// Encodes a batch from its header and its uncompressed records section,
/// compressing with the header's codec. The length and CRC are computed
/// (and the length written back into `header`); the base offset and
/// partition leader epoch are left for [`patch_into`] to fill when served.
pub fn encode_batch(header: &mut BatchHeader, records: &[u8]) -> Result<Bytes, BatchError> {
    let mut out = BytesMut::with_capacity(HEADER_LEN + records.len());
    out.put_i64(0); // base offset
    out.put_i32(0); // batch length, below
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2); // magic
    out.put_u32(0); // CRC, below
    out.put_i16(header.attributes);
    out.put_i32(header.last_offset_delta);
    out.put_i64(header.base_timestamp);
    out.put_i64(header.max_timestamp);
    out.put_i64(header.producer_id);
    out.put_i16(header.producer_epoch);
    out.put_i32(header.base_sequence);
    out.put_i32(header.record_count);
    compress(header.compression(), &mut out, records)?;
    let batch_length = i32::try_from(out.len() - 12)
        .map_err(|_| BatchError::Invalid("the rebuilt batch is too large".into()))?;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    header.batch_length = batch_length;
    Ok(out.freeze())
}

/// A transaction marker as Kafka writes it: a control batch of one record
/// whose key is (version 0, type 0 = abort or 1 = commit) and whose value
/// is (version 0, coordinator epoch), stamped with the producer's id and
/// epoch.
pub fn marker(producer_id: i64, epoch: i16, commit: bool, now_ms: i64) -> (BatchHeader, Bytes) {
    let mut record = Vec::with_capacity(24);
    encode_record(
        &mut record,
        0,
        0,
        Some(&[0, 0, 0, u8::from(commit)]),
        Some(&[0, 0, 0, 0, 0, 0]),
        &[],
    );
    let mut header = BatchHeader {
        batch_length: 0,
        attributes: CONTROL_BATCH,
        last_offset_delta: 0,
        base_timestamp: now_ms,
        max_timestamp: now_ms,
        producer_id,
        producer_epoch: epoch,
        base_sequence: -1,
        record_count: 1,
    };
    // Uncompressed, so encoding cannot fail.
    let bytes = encode_batch(&mut header, &record).unwrap_or_default();
    (header, bytes)
}

/// Whether a control batch is a commit marker (else an abort marker).
pub fn is_commit_marker(batch: &Bytes, header: &BatchHeader) -> bool {
    let Ok(section) = records_section(batch, header) else {
        return false;
    };
    Records::new(&section, header.record_count)
        .next()
        .and_then(|r| r.ok())
        .and_then(|r| r.key)
        .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 1])
}

fn compress(codec: i16, out: &mut BytesMut, records: &[u8]) -> Result<(), BatchError> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let fill = |buf: &mut BytesMut| {
        buf.extend_from_slice(records);
        Ok(())
    };
    let done = match codec {
        0 => {
            out.extend_from_slice(records);
            return Ok(());
        }
        1 => Gzip::compress(out, fill),
        2 => Snappy::compress(out, fill),
        3 => Lz4::compress(out, fill),
        4 => Zstd::compress(out, fill),
        other => {
            return Err(BatchError::Invalid(format!(
                "unknown compression codec {other}"
            )));
        }
    };
    done.map_err(|e| BatchError::Invalid(format!("cannot compress the batch: {e}")))
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Appends one record in the v2 encoding, its length prefix included, with
/// `headers` already encoded (count and headers, as [`RecordView::rest`]
/// holds them). `body` is scratch space, reused across calls.
pub fn encode_record_with_headers(
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[u8],
) {
    body.clear();
    body.push(0); // attributes
    put_varint(body, timestamp_delta);
    put_varint(body, offset_delta);
    put_nullable(body, key);
    put_nullable(body, value);
    body.extend_from_slice(headers);
    put_varint(out, body.len() as i64);
    out.extend_from_slice(body);
}

/// Appends one record in the v2 encoding, its length prefix included.
pub fn encode_record(
    out: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[HeaderView<'_>],
) {
    let mut body = Vec::with_capacity(
        16 + key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|(k, v)| 4 + k.len() + v.map_or(0, <[u8]>::len))
                .sum::<usize>(),
    );
    body.push(0); // attributes
    put_varint(&mut body, timestamp_delta);
    put_varint(&mut body, i64::from(offset_delta));
    put_nullable(&mut body, key);
    put_nullable(&mut body, value);
    put_varint(&mut body, headers.len() as i64);
    for (k, v) in headers {
        put_nullable(&mut body, Some(k));
        put_nullable(&mut body, *v);
    }
    put_varint(out, body.len() as i64);
    out.extend_from_slice(&body);
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
                headers: [("h".into(), Some(Bytes::from(format!("v{i}"))))]
                    .into_iter()
                    .collect(),
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

    /// What a consumer sees: the batch with a base offset, decoded.
    fn served(batch: &Bytes, base_offset: i64) -> Vec<Record> {
        let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&batch[CRC_START..]), "CRC");
        let mut out = Vec::new();
        patch_into(&mut out, batch, base_offset, 0);
        kafka_protocol::records::RecordBatchDecoder::decode(&mut Bytes::from(out))
            .unwrap()
            .records
    }

    #[test]
    fn removing_records_keeps_offsets_sequences_and_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = split_and_check(&encode(10, c), 1 << 20).unwrap().remove(0);
            let split = remove_records(&batch, &[1, 3, 9]).unwrap();
            let h = split.kept.header;
            assert_eq!(h.record_count, 7);
            assert_eq!(h.last_offset_delta, 9);
            assert_eq!(h.offset_span(), 10);
            assert_eq!(h.last_sequence(), batch.header.last_sequence());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (7, 0, 0)
            );
            assert_eq!(h.base_timestamp, 1000);
            assert_eq!(h.max_timestamp, 1008, "the last record is gone");
            assert_eq!(h.attributes, batch.header.attributes);
            assert_eq!(h.batch_length as usize + 12, split.kept.bytes.len());
            let records = served(&split.kept.bytes, 100);
            let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, [100, 102, 104, 105, 106, 107, 108], "{c:?}");
            assert_eq!(records[1].key.as_deref(), Some(&b"k2"[..]));
            assert_eq!(records[1].timestamp, 1002);
            let headers: Vec<(String, Option<Bytes>)> = records[1]
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            assert_eq!(headers, [("h".to_owned(), Some(Bytes::from("v2")))]);
            let removed: Vec<(usize, i32, i64)> = split
                .removed
                .iter()
                .map(|r| (r.index, r.offset_delta, r.timestamp))
                .collect();
            assert_eq!(removed, [(1, 1, 1001), (3, 3, 1003), (9, 9, 1009)]);
            let r = &split.removed[1];
            assert_eq!(r.key.as_deref(), Some(&b"k3"[..]));
            assert_eq!(r.value.as_deref(), Some(&[b'x'; 100][..]));
            assert_eq!(
                r.headers,
                [(Bytes::from("h"), Some(Bytes::from("v3")))].to_vec()
            );
        }
    }

    #[test]
    fn removing_every_record_leaves_an_empty_uncompressed_batch() {
        let batch = split_and_check(&encode(3, Compression::Gzip), 1 << 20)
            .unwrap()
            .remove(0);
        let split = remove_records(&batch, &[0, 1, 2]).unwrap();
        let h = split.kept.header;
        assert_eq!((h.record_count, h.last_offset_delta), (0, 2));
        assert_eq!(h.compression(), 0);
        assert_eq!(h.max_timestamp, batch.header.max_timestamp);
        assert_eq!(split.kept.bytes.len(), HEADER_LEN);
        // Served as a control batch: one commit marker at the last offset.
        let mut out = Vec::new();
        patch_into(&mut out, &split.kept.bytes, 7, 0);
        let crc = u32::from_be_bytes(out[17..21].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&out[CRC_START..]), "CRC");
        let attributes = i16::from_be_bytes(out[21..23].try_into().unwrap());
        assert_eq!(
            attributes & 0x37,
            0x30,
            "control, transactional, uncompressed"
        );
        let last_offset_delta = i32::from_be_bytes(out[23..27].try_into().unwrap());
        let record_count = i32::from_be_bytes(out[57..61].try_into().unwrap());
        assert_eq!((last_offset_delta, record_count), (2, 1));
        let records = kafka_protocol::records::RecordBatchDecoder::decode(&mut Bytes::from(out))
            .unwrap()
            .records;
        assert_eq!(records.len(), 1);
        assert!(records[0].control);
        assert_eq!(records[0].offset, 9);
        assert_eq!(records[0].key.as_deref(), Some(&[0, 0, 0, 1][..]));
        assert_eq!(split.removed.len(), 3);
    }

    #[test]
    fn malformed_headers_are_an_error() {
        let mut section = Vec::new();
        encode_record(&mut section, 0, 0, None, Some(b"v"), &[(b"k", None)]);
        let view = Records::new(&section, 1).next().unwrap().unwrap();
        assert_eq!(view.headers().unwrap(), [(&b"k"[..], None)]);
        // Claim more headers than there are bytes for.
        let mut broken = view;
        broken.rest = &[0x7e, 0x02];
        assert!(broken.headers().is_err());
        broken.rest = &[0x02, 0x02, b'k', 0x01, 0xff];
        assert!(broken.headers().is_err());
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
