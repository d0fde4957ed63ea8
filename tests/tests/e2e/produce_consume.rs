//! Bulk produce with every compression codec, then read everything back.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};
use sluice_tests::{Broker, Rec};

use crate::common::{
    assert_all_acked, assert_same_log, produce_all, produce_generated, read_all, send_one,
};

const PARTITIONS: i32 = 8;

/// Creates an 8-partition topic, produces `n` varied records with the
/// idempotent `acks=all` producer using `codec`, then consumes every
/// partition from the beginning and compares byte for byte.
fn round_trip(codec: &str, n: u64, seed: u64) {
    let broker = Broker::start();
    let topic = format!("round-trip-{codec}");
    broker.create_topic(&topic, PARTITIONS, &[]);

    let expected = produce_generated(
        &broker,
        &topic,
        PARTITIONS,
        n,
        seed,
        &[("compression.type", codec)],
    );
    assert_eq!(
        expected.len(),
        PARTITIONS as usize,
        "records must reach all partitions"
    );

    for (p, recs) in &expected {
        assert_eq!(
            broker.watermarks(&topic, *p),
            (0, recs.len() as i64),
            "watermarks of partition {p}"
        );
    }

    let got = read_all(&broker, &topic, PARTITIONS, Duration::from_secs(300));
    assert_same_log(&got, &expected);
}

#[test]
fn produce_consume_100k_uncompressed() {
    round_trip("none", 100_000, 1);
}

#[test]
fn produce_consume_gzip() {
    round_trip("gzip", 20_000, 2);
}

#[test]
fn produce_consume_snappy() {
    round_trip("snappy", 20_000, 3);
}

#[test]
fn produce_consume_lz4() {
    round_trip("lz4", 20_000, 4);
}

#[test]
fn produce_consume_zstd() {
    round_trip("zstd", 20_000, 5);
}

/// Several idempotent producers write to the same partitions at once: every
/// record is stored once, offsets are contiguous, and each producer's records
/// keep their relative order within a partition.
#[test]
fn concurrent_producers_keep_their_order() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 10_000;
    let broker = Broker::start();
    broker.create_topic("shared", 2, &[]);
    let ts = sluice_tests::now_ms();

    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let broker = &broker;
            s.spawn(move || {
                let records: Vec<Rec> = (0..PER_PRODUCER)
                    .map(|seq| Rec {
                        partition: (seq % 2) as i32,
                        offset: -1,
                        key: Some(format!("producer-{p}").into_bytes()),
                        value: Some(format!("{p}:{seq}").into_bytes()),
                        headers: vec![],
                        timestamp: Timestamp::CreateTime(ts),
                    })
                    .collect();
                let producer = broker.producer(&[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    ("linger.ms", "2"),
                ]);
                let reports = produce_all(&producer, "shared", &records, Duration::from_secs(180));
                assert_all_acked(&reports, PER_PRODUCER);
            });
        }
    });

    let got = read_all(&broker, "shared", 2, Duration::from_secs(120));
    let mut total = 0;
    for (p, recs) in &got {
        let mut last = [None::<usize>; PRODUCERS];
        for (n, r) in recs.iter().enumerate() {
            assert_eq!(
                r.offset, n as i64,
                "partition {p}: offsets must be contiguous"
            );
            let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
            let (prod, seq) = v.split_once(':').unwrap();
            let (prod, seq): (usize, usize) = (prod.parse().unwrap(), seq.parse().unwrap());
            assert_eq!(seq % 2, *p as usize, "record {v} on the wrong partition");
            assert_eq!(
                r.key.as_deref(),
                Some(format!("producer-{prod}").as_bytes())
            );
            if let Some(prev) = last[prod] {
                assert!(
                    seq > prev,
                    "partition {p}: producer {prod} record {seq} stored after {prev}"
                );
            }
            last[prod] = Some(seq);
        }
        total += recs.len();
    }
    assert_eq!(total, PRODUCERS * PER_PRODUCER, "records stored");
}

/// A consumer waiting at the end of a partition receives records as they
/// are produced, promptly and in order.
#[test]
fn tailing_consumer_sees_live_records() {
    const N: usize = 1_000;
    let broker = Broker::start();
    broker.create_topic("live", 1, &[]);
    let consumer = broker.consumer(&[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("live", 0, Offset::End).unwrap();
    consumer.assign(&tpl).unwrap();
    // Let the consumer resolve the end offset and start waiting.
    let _ = consumer.poll(Duration::from_millis(500));

    std::thread::scope(|s| {
        s.spawn(|| {
            let producer = broker.producer(&[("acks", "all"), ("linger.ms", "0")]);
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..N {
                let rec = Rec {
                    partition: 0,
                    offset: -1,
                    key: None,
                    value: Some(i.to_string().into_bytes()),
                    headers: vec![],
                    timestamp: Timestamp::CreateTime(sluice_tests::now_ms()),
                };
                send_one(&producer, "live", &rec, i, deadline);
                std::thread::sleep(Duration::from_millis(2));
            }
            producer.flush(Duration::from_secs(60)).expect("flush");
            assert_eq!(producer.context().acked(), N as u64);
        });

        let deadline = Instant::now() + Duration::from_secs(60);
        let mut next = 0usize;
        let mut worst_ms = 0i64;
        while next < N {
            assert!(
                Instant::now() < deadline,
                "only {next} of {N} live records arrived"
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    assert_eq!(m.offset(), next as i64);
                    assert_eq!(m.payload(), Some(next.to_string().as_bytes()));
                    let sent = m.timestamp().to_millis().unwrap();
                    worst_ms = worst_ms.max(sluice_tests::now_ms() - sent);
                    next += 1;
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => eprintln!("consumer error: {e}"),
            }
        }
        assert!(
            worst_ms < 5_000,
            "a live record took {worst_ms} ms from send to consumer"
        );
    });
}

/// acks=0: the broker sends no response, and the records are still stored
/// in order once the producer has flushed them.
#[test]
fn acks_zero_records_are_stored_without_responses() {
    let broker = Broker::start();
    let topic = "acks-zero";
    broker.create_topic(topic, 1, &[]);
    let producer = broker.producer(&[("acks", "0"), ("linger.ms", "5")]);
    let records: Vec<Rec> = (0..2_000)
        .map(|i| Rec {
            partition: 0,
            offset: -1,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("value-{i}").into_bytes()),
            headers: Vec::new(),
            timestamp: Timestamp::CreateTime(sluice_tests::now_ms()),
        })
        .collect();
    let reports = produce_all(&producer, topic, &records, Duration::from_secs(60));
    assert_eq!(
        reports.len(),
        records.len(),
        "every send gets a delivery report"
    );
    // With acks=0 a delivery report only means "sent"; wait until stored.
    let deadline = Instant::now() + Duration::from_secs(20);
    while broker.watermarks(topic, 0).1 < records.len() as i64 {
        assert!(
            Instant::now() < deadline,
            "acks=0 records never became readable"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = read_all(&broker, topic, 1, Duration::from_secs(60));
    let values: Vec<_> = got[&0].iter().map(|r| r.value.clone()).collect();
    let sent: Vec<_> = records.iter().map(|r| r.value.clone()).collect();
    assert_eq!(
        values, sent,
        "acks=0 records are stored once each, in order"
    );
    // Acknowledged produces to the same partition continue after them.
    let acked = broker.producer(&[("acks", "all")]);
    let more = produce_all(&acked, topic, &records[..10], Duration::from_secs(30));
    assert_all_acked(&more, 10);
}
