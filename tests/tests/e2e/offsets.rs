//! ListOffsets (earliest, latest, by timestamp) and fetching from arbitrary
//! offsets.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset};
use rdkafka::{Timestamp, TopicPartitionList};
use sluice_tests::{Broker, DeliveryLog, OP_TIMEOUT, Rec};

use crate::common::send_one;

/// Sends `recs` (ids `first_id..`) and flushes, so that they travel together
/// as one record batch (linger is long, flush sends immediately).
fn produce_as_one_batch(
    producer: &rdkafka::producer::ThreadedProducer<DeliveryLog>,
    topic: &str,
    recs: &[Rec],
    first_id: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, r) in recs.iter().enumerate() {
        send_one(producer, topic, r, first_id + i, deadline);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

fn batch_producer(
    broker: &Broker,
    codec: &str,
) -> rdkafka::producer::ThreadedProducer<DeliveryLog> {
    broker.producer(&[
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("linger.ms", "5000"),
        ("batch.num.messages", "10000"),
        ("batch.size", "10000000"),
        ("compression.type", codec),
    ])
}

fn rec(partition: i32, i: usize, ts: i64) -> Rec {
    Rec {
        partition,
        offset: i as i64,
        key: Some(format!("k{i}").into_bytes()),
        value: Some(format!("value {i} {}", "v".repeat(i % 37)).into_bytes()),
        headers: vec![("n".to_string(), Some(i.to_string().into_bytes()))],
        timestamp: Timestamp::CreateTime(ts),
    }
}

fn offset_for_time(broker: &Broker, topic: &str, partition: i32, ts: i64) -> Offset {
    let consumer = broker.consumer(&[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ts))
        .unwrap();
    let res = consumer
        .offsets_for_times(tpl, OP_TIMEOUT)
        .unwrap_or_else(|e| panic!("ListOffsets by timestamp {ts} failed: {e}"));
    let elem = res
        .find_partition(topic, partition)
        .expect("partition in ListOffsets result");
    elem.error()
        .unwrap_or_else(|e| panic!("ListOffsets by timestamp {ts}: partition error {e}"));
    elem.offset()
}

#[test]
fn list_offsets_earliest_latest_and_by_timestamp() {
    let broker = Broker::start();
    broker.create_topic("times", 2, &[]);
    let base = sluice_tests::now_ms() - 600_000;

    // 10 batches of 50 records; record j has timestamp base + 10 * j.
    let producer = batch_producer(&broker, "none");
    let all: Vec<Rec> = (0..500).map(|j| rec(0, j, base + 10 * j as i64)).collect();
    for b in 0..10 {
        produce_as_one_batch(&producer, "times", &all[b * 50..(b + 1) * 50], b * 50);
    }
    let reports = producer.context().take();
    assert!(reports.iter().all(|d| d.error.is_none()), "{reports:?}");
    assert_eq!(reports.len(), 500);

    assert_eq!(
        broker.watermarks("times", 0),
        (0, 500),
        "earliest/latest of partition 0"
    );
    assert_eq!(
        broker.watermarks("times", 1),
        (0, 0),
        "earliest/latest of empty partition 1"
    );

    let cases: &[(i64, Offset, &str)] = &[
        (base - 60_000, Offset::Offset(0), "before the first record"),
        (base, Offset::Offset(0), "exactly the first record"),
        (
            base + 250,
            Offset::Offset(25),
            "exact timestamp in the middle of the first batch",
        ),
        (
            base + 727,
            Offset::Offset(73),
            "between two records in the middle of a batch",
        ),
        (
            base + 495,
            Offset::Offset(50),
            "just before the first record of a batch",
        ),
        (base + 500, Offset::Offset(50), "first record of a batch"),
        (
            base + 491,
            Offset::Offset(50),
            "after the last record of a batch",
        ),
        (base + 3_333, Offset::Offset(334), "middle of a later batch"),
        (base + 4_990, Offset::Offset(499), "the last record"),
        (
            base + 4_991,
            Offset::End,
            "after the last record (logical end, -1)",
        ),
        (base + 86_400_000, Offset::End, "far in the future"),
    ];
    for (ts, want, what) in cases {
        let got = offset_for_time(&broker, "times", 0, *ts);
        assert_eq!(
            got, *want,
            "offsets_for_times({ts}) = {got:?}, want {want:?}: {what}"
        );
    }
    assert_eq!(
        offset_for_time(&broker, "times", 1, base),
        Offset::End,
        "offsets_for_times on an empty partition"
    );

    // The record found by timestamp is the one we expect.
    let got = broker
        .read_partitions("times", &[(0, Offset::Offset(73))], Duration::from_secs(60))
        .unwrap();
    assert_eq!(got[&0].first(), Some(&all[73]));
}

#[test]
fn fetch_from_the_middle_of_a_batch() {
    let broker = Broker::start();
    broker.create_topic("mid", 2, &[]);
    let ts = sluice_tests::now_ms();
    let p0: Vec<Rec> = (0..100).map(|i| rec(0, i, ts + i as i64)).collect();
    let p1: Vec<Rec> = (0..100).map(|i| rec(1, i, ts + i as i64)).collect();
    let plain = batch_producer(&broker, "none");
    produce_as_one_batch(&plain, "mid", &p0, 0);
    let compressed = batch_producer(&broker, "lz4");
    produce_as_one_batch(&compressed, "mid", &p1, 0);
    for p in [plain.context().take(), compressed.context().take()] {
        assert_eq!(p.len(), 100);
        assert!(p.iter().all(|d| d.error.is_none()), "{p:?}");
    }

    for (partition, expected) in [(0, &p0), (1, &p1)] {
        for start in [37usize, 0, 1, 50, 99, 100] {
            let got = broker
                .read_partitions(
                    "mid",
                    &[(partition, Offset::Offset(start as i64))],
                    Duration::from_secs(60),
                )
                .unwrap();
            let got = &got[&partition];
            assert_eq!(
                got.first().map(|r| r.offset),
                expected.get(start).map(|r| r.offset),
                "partition {partition}: first record fetched from offset {start}"
            );
            assert_eq!(
                got.as_slice(),
                &expected[start..],
                "partition {partition}: records fetched from offset {start}"
            );
        }
    }
}

#[test]
fn fetch_out_of_range_offset() {
    let broker = Broker::start();
    broker.create_topic("range", 1, &[]);
    let ts = sluice_tests::now_ms();
    let recs: Vec<Rec> = (0..100).map(|i| rec(0, i, ts)).collect();
    let producer = batch_producer(&broker, "none");
    produce_as_one_batch(&producer, "range", &recs, 0);
    assert_eq!(broker.watermarks("range", 0), (0, 100));

    // auto.offset.reset=error surfaces OFFSET_OUT_OF_RANGE to the application.
    let consumer = broker.consumer(&[("auto.offset.reset", "error")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("range", 0, Offset::Offset(150))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = vec![];
    loop {
        assert!(
            Instant::now() < deadline,
            "no out-of-range error when fetching offset 150 of a 100-record partition; got {seen:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(e)) => {
                let code = match &e {
                    KafkaError::MessageConsumption(c) => Some(*c),
                    other => other.rdkafka_error_code(),
                };
                if matches!(
                    code,
                    Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
                ) {
                    break;
                }
                seen.push(e.to_string());
            }
            Some(Ok(m)) => panic!(
                "got a record at offset {} from an out-of-range fetch",
                m.offset()
            ),
            None => {}
        }
    }

    // auto.offset.reset=earliest restarts from the first record.
    let consumer = broker.consumer(&[("auto.offset.reset", "earliest")]);
    let got = broker
        .read_partitions_with(
            &consumer,
            "range",
            &[(0, Offset::Offset(150))],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(
        got[&0].len(),
        100,
        "reset to earliest must deliver all 100 records"
    );
    assert_eq!(got[&0][0], recs[0]);

    // auto.offset.reset=latest lands at the end with nothing to read.
    let consumer = broker.consumer(&[("auto.offset.reset", "latest")]);
    let got = broker
        .read_partitions_with(
            &consumer,
            "range",
            &[(0, Offset::Offset(150))],
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(
        got[&0].is_empty(),
        "reset to latest must deliver nothing: {:?}",
        got[&0]
    );
}
