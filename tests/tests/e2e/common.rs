//! Record generation, producing and checking shared by the end-to-end tests.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, Timestamp};
use sluice_tests::{Broker, Delivery, DeliveryLog, Rec, Rng};

/// Producer settings used for "safe" produce runs.
pub const SAFE_PRODUCER: &[(&str, &str)] = &[
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("linger.ms", "5"),
    ("message.timeout.ms", "120000"),
    ("queue.buffering.max.messages", "500000"),
    ("queue.buffering.max.kbytes", "1048576"),
];

/// Builds the `i`-th test record of a run: a mix of null, empty, text and
/// binary keys; values of very different sizes (including null, empty and
/// multi-kilobyte, compressible and incompressible); zero to three headers
/// (with duplicate names, non-ASCII names and null values); and explicit
/// timestamps that are not monotonic.
pub fn gen_record(seed: u64, i: u64, partitions: i32, base_ts: i64) -> Rec {
    let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i));
    let key = match i % 50 {
        0 => None,
        1 => Some(vec![]),
        2 => Some(rng.bytes(16)),
        _ => Some(format!("key-{i}").into_bytes()),
    };
    let roll = rng.range(0, 1000);
    let len = if roll < 750 {
        rng.range(0, 200)
    } else if roll < 980 {
        rng.range(200, 1500)
    } else {
        rng.range(1500, 12_000)
    } as usize;
    let value = match i % 97 {
        0 => None,
        1 => Some(vec![]),
        _ if i.is_multiple_of(3) => Some(rng.bytes(len)),
        _ => {
            let mut v = format!("id={i};").into_bytes();
            v.extend(rng.text(len));
            Some(v)
        }
    };
    let nheaders = i % 4;
    let headers = (0..nheaders)
        .map(|j| {
            let name = match j {
                0 => "trace-id".to_string(),
                1 => "dup".to_string(),
                _ if i % 8 == 3 => "dup".to_string(),
                _ => "schlüssel".to_string(),
            };
            let val = if (i + j).is_multiple_of(7) {
                None
            } else {
                let n = rng.range(0, 40) as usize;
                Some(rng.bytes(n))
            };
            (name, val)
        })
        .collect();
    let jitter = if i % 10 == 9 { -5_000 } else { 0 };
    Rec {
        partition: (i % partitions as u64) as i32,
        offset: -1,
        key,
        value,
        headers,
        timestamp: Timestamp::CreateTime(base_ts + i as i64 + jitter),
    }
}

/// Sends every record (record `i` with delivery id `i`) to its partition,
/// retrying while the local queue is full, then flushes. Returns the delivery
/// reports ordered by id.
pub fn produce_all(
    producer: &ThreadedProducer<DeliveryLog>,
    topic: &str,
    records: &[Rec],
    timeout: Duration,
) -> Vec<Delivery> {
    let deadline = Instant::now() + timeout;
    for (i, r) in records.iter().enumerate() {
        send_one(producer, topic, r, i, deadline);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if let Err(e) = producer.flush(left) {
        panic!(
            "flush did not finish within {timeout:?}: {e} ({} acked, {} failed, {} in flight)",
            producer.context().acked(),
            producer.context().failed(),
            producer.in_flight_count()
        );
    }
    let mut reports = producer.context().take();
    reports.sort_by_key(|d| d.id);
    reports
}

/// Sends one record with delivery id `id`, waiting while the queue is full.
pub fn send_one(
    producer: &ThreadedProducer<DeliveryLog>,
    topic: &str,
    r: &Rec,
    id: usize,
    deadline: Instant,
) {
    loop {
        let mut rec: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, id).partition(r.partition);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(ts) = r.timestamp.to_millis() {
            rec = rec.timestamp(ts);
        }
        if !r.headers.is_empty() {
            let mut hs = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                hs = hs.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
            rec = rec.headers(hs);
        }
        match producer.send(rec) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                assert!(
                    Instant::now() < deadline,
                    "producer queue stayed full until the deadline ({} acked so far)",
                    producer.context().acked()
                );
                thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => panic!("send of record {id} failed immediately: {e}"),
        }
    }
}

/// Asserts that every delivery succeeded.
pub fn assert_all_acked(reports: &[Delivery], expected: usize) {
    let failed: Vec<&Delivery> = reports.iter().filter(|d| d.error.is_some()).collect();
    assert!(
        failed.is_empty(),
        "{} of {expected} records failed delivery; first failures: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(reports.len(), expected, "missing delivery reports");
}

/// Combines the records with their delivery reports into the expected
/// contents of each partition, checking on the way that the acknowledged
/// offsets of every partition are 0, 1, 2, ... in send order.
pub fn expected_log(records: &[Rec], reports: &[Delivery]) -> BTreeMap<i32, Vec<Rec>> {
    let mut by_partition: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for d in reports {
        assert!(d.error.is_none());
        let mut r = records[d.id].clone();
        assert_eq!(
            d.partition, r.partition,
            "record {} was acknowledged on another partition",
            d.id
        );
        r.offset = d.offset;
        by_partition.entry(d.partition).or_default().push(r);
    }
    for (p, recs) in &by_partition {
        for (n, r) in recs.iter().enumerate() {
            assert_eq!(
                r.offset, n as i64,
                "partition {p}: the {n}-th acknowledged record (in send order) got offset {}; \
                 acknowledged offsets must be contiguous from 0 in send order",
                r.offset
            );
        }
    }
    by_partition
}

/// Compares what was consumed with what is expected, partition by partition,
/// and reports the first difference in a readable way.
pub fn assert_same_log(got: &BTreeMap<i32, Vec<Rec>>, expected: &BTreeMap<i32, Vec<Rec>>) {
    for (p, want) in expected {
        let have = got.get(p).map(Vec::as_slice).unwrap_or(&[]);
        for (n, (h, w)) in have.iter().zip(want.iter()).enumerate() {
            assert!(
                h == w,
                "partition {p}: record #{n} differs\n  consumed: {h:?}\n  expected: {w:?}"
            );
        }
        assert_eq!(
            have.len(),
            want.len(),
            "partition {p}: consumed {} records, expected {}",
            have.len(),
            want.len()
        );
    }
    for (p, have) in got {
        if !expected.contains_key(p) {
            assert!(
                have.is_empty(),
                "partition {p}: consumed {} unexpected records",
                have.len()
            );
        }
    }
}

/// Every partition of `topic` read from the beginning.
pub fn read_all(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> BTreeMap<i32, Vec<Rec>> {
    let starts: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    broker
        .read_partitions(topic, &starts, timeout)
        .unwrap_or_else(|e| panic!("reading {topic} back failed: {e:#}"))
}

/// Produces `n` generated records to `topic` and checks they were all
/// acknowledged. Returns the expected partition contents.
pub fn produce_generated(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    n: u64,
    seed: u64,
    extra: &[(&str, &str)],
) -> BTreeMap<i32, Vec<Rec>> {
    let base_ts = sluice_tests::now_ms() - 3_600_000;
    let records: Vec<Rec> = (0..n)
        .map(|i| gen_record(seed, i, partitions, base_ts))
        .collect();
    let mut cfg: Vec<(&str, &str)> = SAFE_PRODUCER.to_vec();
    cfg.extend_from_slice(extra);
    let producer = broker.producer(&cfg);
    let reports = produce_all(&producer, topic, &records, Duration::from_secs(300));
    assert_all_acked(&reports, records.len());
    expected_log(&records, &reports)
}

/// Big-endian reader for non-flexible response bodies.
pub struct Dec<'a>(pub &'a [u8]);

impl<'a> Dec<'a> {
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "response truncated");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    pub fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    pub fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    pub fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    pub fn nstr(&mut self) -> Option<String> {
        let n = self.i16();
        (n >= 0).then(|| String::from_utf8(self.take(n as usize).to_vec()).expect("UTF-8 string"))
    }
    pub fn str(&mut self) -> String {
        self.nstr().expect("non-null string")
    }
    pub fn bytes(&mut self) -> Vec<u8> {
        let n = self.i32();
        if n < 0 {
            return vec![];
        }
        self.take(n as usize).to_vec()
    }
    pub fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let n = self.i32();
        (0..n.max(0)).map(|_| item(self)).collect()
    }
    /// Asserts that the whole response was read: the layout matched.
    pub fn end(&self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} unexpected trailing bytes in the response",
            self.0.len()
        );
    }
}
