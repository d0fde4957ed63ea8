//! Raw Kafka protocol over a socket, for tests that need exact control of
//! request bytes: framing, record batches, Produce v3 and InitProducerId.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

use sluice_tests::Broker;

use crate::common::Dec;

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A request frame with a v1 request header (non-flexible).
pub fn frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let client_id = b"sluice-raw-test";
    let mut payload = vec![];
    payload.extend(api_key.to_be_bytes());
    payload.extend(version.to_be_bytes());
    payload.extend(correlation_id.to_be_bytes());
    payload.extend((client_id.len() as i16).to_be_bytes());
    payload.extend(client_id);
    payload.extend(body);
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}

#[derive(Debug)]
pub enum Reply {
    /// The broker closed (or reset) the connection.
    Closed,
    /// One response frame, without its length prefix.
    Frame(Vec<u8>),
}

pub fn connect(broker: &Broker) -> TcpStream {
    let s = TcpStream::connect_timeout(&broker.kafka_addr(), Duration::from_secs(5))
        .expect("connect to the Kafka port");
    s.set_nodelay(true).unwrap();
    s
}

pub fn read_reply(stream: &mut TcpStream) -> Reply {
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let closed = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::UnexpectedEof
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
        )
    };
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if closed(&e) => return Reply::Closed,
        Err(e) => panic!(
            "the broker neither answered nor closed the connection within {REPLY_TIMEOUT:?} ({e})"
        ),
    }
    let len = i32::from_be_bytes(len);
    assert!(
        (4..64 << 20).contains(&len),
        "implausible response length {len}"
    );
    let mut body = vec![0u8; len as usize];
    match stream.read_exact(&mut body) {
        Ok(()) => Reply::Frame(body),
        Err(e) if closed(&e) => panic!("connection closed in the middle of a response"),
        Err(e) => panic!("incomplete response: {e}"),
    }
}

/// Encodes a varint (zig-zag) as used inside record batches.
pub fn varint(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// A v2 record batch with one record whose value is `value`.
pub fn record_batch(value: &[u8], ts: i64) -> Vec<u8> {
    record_batch_of(&[value], (-1, -1, -1), ts)
}

/// A v2 record batch (uncompressed) of records with these values, no keys
/// and no headers, from `(producer id, epoch, base sequence)`.
pub fn record_batch_of(values: &[&[u8]], producer: (i64, i16, i32), ts: i64) -> Vec<u8> {
    let mut records = vec![];
    for (i, value) in values.iter().enumerate() {
        let mut rec = vec![0u8]; // attributes
        varint(0, &mut rec); // timestamp delta
        varint(i as i64, &mut rec); // offset delta
        varint(-1, &mut rec); // null key
        varint(value.len() as i64, &mut rec);
        rec.extend(*value);
        varint(0, &mut rec); // no headers
        varint(rec.len() as i64, &mut records);
        records.extend(rec);
    }
    let (producer_id, epoch, sequence) = producer;
    let mut after_crc = vec![];
    after_crc.extend(0i16.to_be_bytes()); // attributes
    after_crc.extend((values.len() as i32 - 1).to_be_bytes()); // last offset delta
    after_crc.extend(ts.to_be_bytes()); // base timestamp
    after_crc.extend(ts.to_be_bytes()); // max timestamp
    after_crc.extend(producer_id.to_be_bytes());
    after_crc.extend(epoch.to_be_bytes());
    after_crc.extend(sequence.to_be_bytes()); // base sequence
    after_crc.extend((values.len() as i32).to_be_bytes()); // record count
    after_crc.extend(records);

    let mut batch = vec![];
    batch.extend(0i64.to_be_bytes()); // base offset
    let batch_len = 4 + 1 + 4 + after_crc.len();
    batch.extend((batch_len as i32).to_be_bytes());
    batch.extend((-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend(crc32c::crc32c(&after_crc).to_be_bytes());
    batch.extend(after_crc);
    batch
}

/// A Produce v3 request body for one partition.
pub fn produce_v3_body(topic: &str, partition: i32, batch: &[u8]) -> Vec<u8> {
    let mut b = vec![];
    b.extend((-1i16).to_be_bytes()); // null transactional id
    b.extend((-1i16).to_be_bytes()); // acks = all
    b.extend(10_000i32.to_be_bytes()); // timeout
    b.extend(1i32.to_be_bytes());
    b.extend((topic.len() as i16).to_be_bytes());
    b.extend(topic.as_bytes());
    b.extend(1i32.to_be_bytes());
    b.extend(partition.to_be_bytes());
    b.extend((batch.len() as i32).to_be_bytes());
    b.extend(batch);
    b
}

/// Parses a Produce v3 response for one partition: (error code, base offset).
pub fn produce_v3_result(f: &[u8], correlation_id: i32) -> (i16, i64) {
    let mut c = Dec(f);
    assert_eq!(c.i32(), correlation_id);
    assert_eq!(c.i32(), 1, "one topic in the response");
    c.str();
    assert_eq!(c.i32(), 1, "one partition in the response");
    assert_eq!(c.i32(), 0, "partition id");
    let err = c.i16();
    let base = c.i64();
    (err, base)
}

/// An InitProducerId v0 request body for an idempotent (non-transactional)
/// producer.
pub fn init_producer_id_v0_body() -> Vec<u8> {
    let mut b = vec![];
    b.extend((-1i16).to_be_bytes()); // null transactional id
    b.extend(60_000i32.to_be_bytes()); // transaction timeout
    b
}

/// Parses an InitProducerId v0 response: (error code, producer id, epoch).
pub fn init_producer_id_v0_result(f: &[u8], correlation_id: i32) -> (i16, i64, i16) {
    let mut c = Dec(f);
    assert_eq!(c.i32(), correlation_id);
    c.i32(); // throttle time
    let err = c.i16();
    let id = c.i64();
    let epoch = c.i16();
    c.end("InitProducerId v0");
    (err, id, epoch)
}
