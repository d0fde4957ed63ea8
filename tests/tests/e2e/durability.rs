//! Data survives a graceful restart and a SIGKILL in the middle of producing.

use std::collections::{BTreeMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::producer::Producer;
use rdkafka::{Offset, Timestamp};
use sluice_tests::{Broker, OP_TIMEOUT, Rec, block_on};

use crate::common::{
    SAFE_PRODUCER, assert_all_acked, assert_same_log, produce_all, produce_generated, read_all,
    send_one,
};

fn topic_config(broker: &Broker, topic: &str, key: &str) -> Option<String> {
    let admin = broker.admin();
    let opts = AdminOptions::new().request_timeout(Some(OP_TIMEOUT));
    let res = block_on(
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts),
        OP_TIMEOUT,
    )
    .unwrap()
    .expect("DescribeConfigs request failed");
    let resource = res[0].as_ref().expect("DescribeConfigs error for topic");
    resource.get(key).and_then(|e| e.value.clone())
}

#[test]
fn restart_after_sigterm_keeps_everything() {
    let mut broker = Broker::start();
    broker.create_topic("keep-a", 3, &[("retention.ms", "987654321")]);
    broker.create_topic("keep-b", 1, &[]);

    let exp_a = produce_generated(
        &broker,
        "keep-a",
        3,
        5_000,
        11,
        &[("compression.type", "lz4")],
    );
    let exp_b = produce_generated(&broker, "keep-b", 1, 5_000, 12, &[]);
    assert_same_log(
        &read_all(&broker, "keep-a", 3, Duration::from_secs(120)),
        &exp_a,
    );

    let status = broker.terminate();
    assert!(
        status.success(),
        "sluice should exit cleanly (status 0) on SIGTERM, got {status}"
    );
    broker.restart();

    let topics = broker.topics();
    assert_eq!(
        topics.get("keep-a"),
        Some(&3),
        "topics after restart: {topics:?}"
    );
    assert_eq!(
        topics.get("keep-b"),
        Some(&1),
        "topics after restart: {topics:?}"
    );
    for (p, recs) in &exp_a {
        assert_eq!(broker.watermarks("keep-a", *p), (0, recs.len() as i64));
    }
    assert_eq!(broker.watermarks("keep-b", 0), (0, 5_000));
    assert_same_log(
        &read_all(&broker, "keep-a", 3, Duration::from_secs(120)),
        &exp_a,
    );
    assert_same_log(
        &read_all(&broker, "keep-b", 1, Duration::from_secs(120)),
        &exp_b,
    );
    assert_eq!(
        topic_config(&broker, "keep-a", "retention.ms").as_deref(),
        Some("987654321"),
        "topic config must survive a restart"
    );

    // New writes continue after the existing offsets.
    let more: Vec<Rec> = (0..100)
        .map(|i| Rec {
            partition: 0,
            offset: -1,
            key: Some(format!("after-restart-{i}").into_bytes()),
            value: Some(vec![i as u8; 100]),
            headers: vec![],
            timestamp: Timestamp::CreateTime(sluice_tests::now_ms()),
        })
        .collect();
    let producer = broker.producer(SAFE_PRODUCER);
    let reports = produce_all(&producer, "keep-b", &more, Duration::from_secs(60));
    assert_all_acked(&reports, more.len());
    for (i, d) in reports.iter().enumerate() {
        assert_eq!(
            d.offset,
            5_000 + i as i64,
            "offsets must continue after a restart"
        );
    }
    let got = broker
        .read_partitions(
            "keep-b",
            &[(0, Offset::Offset(5_000))],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(got[&0].len(), 100);
    assert_eq!(got[&0][99].key.as_deref(), Some(&b"after-restart-99"[..]));
}

/// Decodes the id from a value written by the SIGKILL test.
fn id_of(r: &Rec) -> u64 {
    let v = r.value.as_deref().expect("value");
    let s = std::str::from_utf8(&v[..v.iter().position(|b| *b == b';').expect("id separator")])
        .unwrap();
    s.parse().unwrap()
}

#[test]
fn sigkill_during_idempotent_produce_loses_no_acked_record_and_duplicates_none() {
    const TOTAL: usize = 50_000;
    const KILL_AFTER_ACKS: u64 = 12_000;
    const PARTITIONS: i32 = 4;

    let mut broker = Broker::start();
    broker.create_topic("crash", PARTITIONS, &[]);

    let ts = sluice_tests::now_ms();
    let records: Vec<Rec> = (0..TOTAL)
        .map(|i| {
            let mut value = format!("{i};").into_bytes();
            value.extend(std::iter::repeat_n(b'x', 50 + i % 300));
            Rec {
                partition: (i % PARTITIONS as usize) as i32,
                offset: -1,
                key: Some(format!("id-{i}").into_bytes()),
                value: Some(value),
                headers: vec![],
                timestamp: Timestamp::CreateTime(ts + i as i64),
            }
        })
        .collect();

    let mut cfg: Vec<(&str, &str)> = SAFE_PRODUCER.to_vec();
    cfg.extend_from_slice(&[
        ("retry.backoff.ms", "50"),
        ("reconnect.backoff.ms", "50"),
        ("reconnect.backoff.max.ms", "500"),
    ]);
    let producer = broker.producer(&cfg);

    let killed_at = thread::scope(|s| {
        let sender = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(240);
            for (i, r) in records.iter().enumerate() {
                send_one(&producer, "crash", r, i, deadline);
                if i % 500 == 499 {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        });

        let deadline = Instant::now() + Duration::from_secs(120);
        while producer.context().acked() < KILL_AFTER_ACKS {
            assert!(
                Instant::now() < deadline,
                "only {} acks after 120 s",
                producer.context().acked()
            );
            assert!(
                producer.context().failed() == 0,
                "deliveries failed before the crash"
            );
            thread::sleep(Duration::from_millis(1));
        }
        broker.kill9();
        let killed_at = producer.context().acked();
        thread::sleep(Duration::from_millis(300));
        broker.restart();
        sender.join().expect("sender thread");
        killed_at
    });
    assert!(
        (killed_at as usize) < TOTAL,
        "everything was acknowledged before the kill; the test did not exercise a crash"
    );

    let flushed = producer.flush(Duration::from_secs(180));
    let reports = producer.context().take();
    let acked: Vec<_> = reports.iter().filter(|d| d.error.is_none()).collect();
    eprintln!(
        "killed after {killed_at} acks; finally {} acked, {} failed",
        acked.len(),
        reports.len() - acked.len()
    );

    let got = read_all(&broker, "crash", PARTITIONS, Duration::from_secs(180));
    let mut seen: HashSet<u64> = HashSet::new();
    let mut at: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    for (p, recs) in &got {
        let mut last: Option<u64> = None;
        for (n, r) in recs.iter().enumerate() {
            assert_eq!(
                r.offset, n as i64,
                "partition {p}: offsets must be contiguous from 0"
            );
            let id = id_of(r);
            assert!(seen.insert(id), "record {id} is stored more than once");
            assert_eq!(
                r,
                &Rec {
                    offset: r.offset,
                    ..records[id as usize].clone()
                }
            );
            if let Some(prev) = last {
                assert!(prev < id, "partition {p}: record {id} stored after {prev}");
            }
            last = Some(id);
            at.insert((*p, r.offset), id);
        }
        assert_eq!(broker.watermarks("crash", *p), (0, recs.len() as i64));
    }
    for d in &acked {
        assert!(
            seen.contains(&(d.id as u64)),
            "record {} was acknowledged (partition {}, offset {}) but is not in the log",
            d.id,
            d.partition,
            d.offset
        );
        if d.offset >= 0 {
            assert_eq!(
                at.get(&(d.partition, d.offset)),
                Some(&(d.id as u64)),
                "record {} was acknowledged at offset {} of partition {}, which holds another record",
                d.id,
                d.offset,
                d.partition
            );
        }
    }

    // With a long message timeout the idempotent producer resumes against
    // the restarted broker: every record ends up acknowledged and stored once.
    assert!(
        flushed.is_ok(),
        "producer did not drain after the restart: {flushed:?}"
    );
    assert_all_acked(&reports, TOTAL);
    assert_eq!(
        seen.len(),
        TOTAL,
        "every record must be stored exactly once"
    );
}
