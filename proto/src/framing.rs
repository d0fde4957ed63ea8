//! The Confluent wire framing that prefixes every registry-aware record:
//! `0x00 | schema id (u32, big-endian) | message indexes | payload`.
//!
//! The message-index list locates the record's message type inside the
//! schema file: a zigzag varint count followed by that many zigzag varint
//! indexes, the first into the file's top-level messages and each further
//! one into the previous message's nested messages. The overwhelmingly
//! common path `[0]` is abbreviated to the single byte `0` (a count of 0).

use std::fmt;
use std::ops::Deref;

use crate::ProtoError;

/// First byte of every framed record.
pub const MAGIC_BYTE: u8 = 0;

/// Paths deeper than this cannot come from a real schema; refusing them
/// early bounds the work done for a hostile header.
const MAX_INDEX_DEPTH: usize = 128;

/// Paths up to this long are held without allocating.
const INLINE_INDEXES: usize = 4;

/// A framed record split into its parts. The payload borrows from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub schema_id: u32,
    pub message_indexes: MessageIndexes,
    pub payload: &'a [u8],
}

/// A message-index path. Every produced record is unframed, and real paths
/// are one or two indexes long, so short paths are kept inline rather than
/// in a `Vec` of their own.
#[derive(Clone)]
pub struct MessageIndexes(Indexes);

#[derive(Clone)]
enum Indexes {
    Inline {
        len: u8,
        items: [i32; INLINE_INDEXES],
    },
    Heap(Vec<i32>),
}

impl MessageIndexes {
    fn new() -> Self {
        MessageIndexes(Indexes::Inline {
            len: 0,
            items: [0; INLINE_INDEXES],
        })
    }

    fn push(&mut self, index: i32) {
        match &mut self.0 {
            Indexes::Inline { len, items } => {
                if let Some(slot) = items.get_mut(usize::from(*len)) {
                    *slot = index;
                    *len += 1;
                } else {
                    let mut heap = items.to_vec();
                    heap.push(index);
                    self.0 = Indexes::Heap(heap);
                }
            }
            Indexes::Heap(heap) => heap.push(index),
        }
    }

    pub fn as_slice(&self) -> &[i32] {
        match &self.0 {
            Indexes::Inline { len, items } => &items[..usize::from(*len)],
            Indexes::Heap(heap) => heap,
        }
    }
}

impl Deref for MessageIndexes {
    type Target = [i32];

    fn deref(&self) -> &[i32] {
        self.as_slice()
    }
}

impl From<&[i32]> for MessageIndexes {
    fn from(indexes: &[i32]) -> Self {
        let mut path = MessageIndexes::new();
        for &index in indexes {
            path.push(index);
        }
        path
    }
}

impl PartialEq for MessageIndexes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for MessageIndexes {}

impl PartialEq<[i32]> for MessageIndexes {
    fn eq(&self, other: &[i32]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<i32>> for MessageIndexes {
    fn eq(&self, other: &Vec<i32>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for MessageIndexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// Splits a framed record into schema id, message-index path and payload.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame<'_>, ProtoError> {
    if bytes.len() < 5 {
        return Err(ProtoError::FrameTooShort { len: bytes.len() });
    }
    if bytes[0] != MAGIC_BYTE {
        return Err(ProtoError::BadMagicByte(bytes[0]));
    }
    let schema_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let mut rest = &bytes[5..];
    let count = read_zigzag(&mut rest)?;
    let mut message_indexes = MessageIndexes::new();
    if count == 0 {
        message_indexes.push(0);
    } else {
        let count = usize::try_from(count)
            .ok()
            .filter(|c| *c <= MAX_INDEX_DEPTH)
            .ok_or_else(|| {
                ProtoError::BadMessageIndexes(format!("index count {count} is out of range"))
            })?;
        for _ in 0..count {
            let index = read_zigzag(&mut rest)?;
            let index = i32::try_from(index)
                .ok()
                .filter(|i| *i >= 0)
                .ok_or_else(|| {
                    ProtoError::BadMessageIndexes(format!("message index {index} is out of range"))
                })?;
            message_indexes.push(index);
        }
    }
    Ok(Frame {
        schema_id,
        message_indexes,
        payload: rest,
    })
}

/// Appends the framing header for `schema_id` and `message_indexes` to `out`.
/// An empty path is written as `[0]`, the record type of the schema.
pub fn encode_frame_header(schema_id: u32, message_indexes: &[i32], out: &mut Vec<u8>) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    if message_indexes.is_empty() || message_indexes == [0] {
        out.push(0);
        return;
    }
    write_zigzag(message_indexes.len() as i64, out);
    for index in message_indexes {
        write_zigzag(i64::from(*index), out);
    }
}

/// Frames `payload` as a complete record.
pub fn encode_frame(schema_id: u32, message_indexes: &[i32], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6 + message_indexes.len() * 2);
    encode_frame_header(schema_id, message_indexes, &mut out);
    out.extend_from_slice(payload);
    out
}

fn read_zigzag(input: &mut &[u8]) -> Result<i64, ProtoError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(ProtoError::BadMessageIndexes(
                "header ends inside a varint".to_owned(),
            ));
        };
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(ProtoError::BadMessageIndexes(
        "varint is longer than 10 bytes".to_owned(),
    ))
}

fn write_zigzag(value: i64, out: &mut Vec<u8>) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_message_uses_single_zero_byte() {
        let framed = encode_frame(7, &[0], b"abc");
        assert_eq!(framed, [0, 0, 0, 0, 7, 0, b'a', b'b', b'c']);
        let frame = decode_frame(&framed).unwrap();
        assert_eq!(frame.schema_id, 7);
        assert_eq!(frame.message_indexes, vec![0]);
        assert_eq!(frame.payload, b"abc");
    }

    #[test]
    fn nested_path_round_trips() {
        let framed = encode_frame(0x0102_0304, &[1, 0, 70], b"");
        // count 3 -> zigzag 6; 1 -> 2; 0 -> 0; 70 -> 140 = 0x8c 0x01.
        assert_eq!(framed[5..], [6, 2, 0, 0x8c, 0x01]);
        let frame = decode_frame(&framed).unwrap();
        assert_eq!(frame.schema_id, 0x0102_0304);
        assert_eq!(frame.message_indexes, vec![1, 0, 70]);
        assert!(frame.payload.is_empty());
    }

    #[test]
    fn long_paths_leave_the_inline_store() {
        for len in 0..=INLINE_INDEXES + 3 {
            let path: Vec<i32> = (0..len as i32).map(|i| i * 70).collect();
            let framed = encode_frame(9, &path, b"p");
            let frame = decode_frame(&framed).unwrap();
            let expected = if path.is_empty() {
                vec![0]
            } else {
                path.clone()
            };
            assert_eq!(frame.message_indexes, expected);
            assert_eq!(frame.payload, b"p");
            assert_eq!(MessageIndexes::from(&expected[..]), frame.message_indexes);
        }
    }

    #[test]
    fn empty_path_is_written_as_first_message() {
        assert_eq!(encode_frame(1, &[], b"x"), encode_frame(1, &[0], b"x"));
    }

    #[test]
    fn short_input_is_rejected() {
        assert_eq!(
            decode_frame(&[0, 0, 0]),
            Err(ProtoError::FrameTooShort { len: 3 })
        );
        // Header present but the index list is missing.
        assert!(matches!(
            decode_frame(&[0, 0, 0, 0, 1]),
            Err(ProtoError::BadMessageIndexes(_))
        ));
    }

    #[test]
    fn bad_magic_is_rejected() {
        assert_eq!(
            decode_frame(&[1, 0, 0, 0, 1, 0]),
            Err(ProtoError::BadMagicByte(1))
        );
    }

    #[test]
    fn garbage_indexes_are_rejected() {
        // Negative count (zigzag 1 = -1).
        assert!(decode_frame(&[0, 0, 0, 0, 1, 1]).is_err());
        // Count of 2 but only one index follows.
        assert!(decode_frame(&[0, 0, 0, 0, 1, 4, 2]).is_err());
        // Unterminated varint.
        assert!(decode_frame(&[0, 0, 0, 0, 1, 0x80, 0x80]).is_err());
        // Absurd count.
        assert!(decode_frame(&[0, 0, 0, 0, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f]).is_err());
        // Negative index.
        assert!(decode_frame(&[0, 0, 0, 0, 1, 2, 1]).is_err());
        // Eleven continuation bytes.
        let mut long = vec![0, 0, 0, 0, 1];
        long.extend([0xff; 11]);
        assert!(decode_frame(&long).is_err());
    }
}
