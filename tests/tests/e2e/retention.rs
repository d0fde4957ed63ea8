//! Topic retention by time (`retention.ms`) and size (`retention.bytes`).

use std::time::{Duration, Instant};

use sluice_tests::{Broker, Rec};

use crate::common::{assert_all_acked, produce_all, read_all};

fn batch_of(n: usize, ts: i64, tag: &str) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            partition: 0,
            offset: -1,
            key: None,
            value: Some(format!("{tag}-{i:05}-{}", "v".repeat(200)).into_bytes()),
            headers: Vec::new(),
            timestamp: rdkafka::Timestamp::CreateTime(ts),
        })
        .collect()
}

/// Waits until the partition's low watermark passes `min`, returning it.
fn wait_low_watermark(broker: &Broker, topic: &str, min: i64) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let w = broker.watermarks(topic, 0);
        if w.0 >= min {
            return w;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not move the log start of {topic} past {min}: {w:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn retention_by_time_deletes_old_batches_only() {
    let broker = Broker::start_with(&["--retention-check-secs", "1"]);
    broker.create_topic("ret-time", 1, &[("retention.ms", "3600000")]);
    let now = sluice_tests::now_ms();
    // One producer flush per group, so old and new records land in separate batches.
    let producer = broker.producer(&[("acks", "all"), ("linger.ms", "0")]);
    let old = batch_of(50, now - 2 * 3_600_000, "old");
    let reports = produce_all(&producer, "ret-time", &old, Duration::from_secs(30));
    assert_all_acked(&reports, old.len());
    let new = batch_of(30, now, "new");
    let reports = produce_all(&producer, "ret-time", &new, Duration::from_secs(30));
    assert_all_acked(&reports, new.len());

    let (low, high) = wait_low_watermark(&broker, "ret-time", 50);
    assert_eq!((low, high), (50, 80), "exactly the old records are gone");
    let left = read_all(&broker, "ret-time", 1, Duration::from_secs(30));
    let values: Vec<_> = left[&0].iter().map(|r| r.value.clone()).collect();
    let expected: Vec<_> = new.iter().map(|r| r.value.clone()).collect();
    assert_eq!(values, expected);
}

#[test]
fn retention_by_size_keeps_the_newest_bytes() {
    let broker = Broker::start_with(&["--retention-check-secs", "1"]);
    // Roughly 260 bytes a record: keep about 40 records' worth.
    broker.create_topic(
        "ret-size",
        1,
        &[("retention.bytes", "10000"), ("retention.ms", "-1")],
    );
    let producer = broker.producer(&[
        ("acks", "all"),
        ("linger.ms", "0"),
        ("batch.num.messages", "10"),
    ]);
    let now = sluice_tests::now_ms();
    let recs = batch_of(200, now, "r");
    let reports = produce_all(&producer, "ret-size", &recs, Duration::from_secs(30));
    assert_all_acked(&reports, recs.len());

    let (low, high) = wait_low_watermark(&broker, "ret-size", 100);
    assert_eq!(high, 200);
    let left = read_all(&broker, "ret-size", 1, Duration::from_secs(30));
    let kept = &left[&0];
    let bytes: usize = kept
        .iter()
        .map(|r| r.value.as_ref().map_or(0, Vec::len))
        .sum();
    assert!(
        bytes <= 10_000,
        "{} records ({bytes} value bytes) kept, over retention.bytes",
        kept.len()
    );
    assert!(!kept.is_empty(), "the newest records are kept");
    assert_eq!(kept.last().unwrap().value, recs.last().unwrap().value);
    assert!(kept.first().unwrap().offset >= low);
}
