//! Many brokers over one PostgreSQL and one S3 API store (moto), both
//! started privately on 127.0.0.1 by the test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use sluice_tests::services::{Postgres, S3Server};
use sluice_tests::{Broker, OP_TIMEOUT, consumer_from, producer_from, unique};

use crate::common::{SAFE_PRODUCER, read_all};
use crate::lakehouse::sluice_cli;
use crate::raw;

pub(crate) const BUCKET: &str = "sluice-test";

/// A PostgreSQL database and an S3 bucket that brokers share.
pub(crate) struct SharedStores {
    /// Held so the server runs as long as the brokers.
    _pg: Postgres,
    pub(crate) s3: S3Server,
    db_url: String,
}

impl SharedStores {
    pub(crate) fn start() -> SharedStores {
        let pg = Postgres::start().expect("start PostgreSQL");
        let s3 = S3Server::start().expect("start the S3 server");
        s3.create_bucket(BUCKET).expect("create bucket");
        let db_url = pg.create_database("sluice").expect("create database");
        SharedStores {
            _pg: pg,
            s3,
            db_url,
        }
    }

    pub(crate) fn broker(&self, id: i32) -> Broker {
        let id = id.to_string();
        let endpoint = self.s3.endpoint();
        let args = [
            "--broker-id",
            &id,
            "--metadata-url",
            &self.db_url,
            "--object-store-url",
            "s3://sluice-test/cluster",
            "--s3-endpoint",
            &endpoint,
            "--broker-session-timeout-ms",
            "3000",
            "--broker-heartbeat-interval-ms",
            "250",
            "--group-initial-rebalance-delay-ms",
            "200",
            "--table-commit-interval-ms",
            "500",
        ];
        Broker::try_start_env(&args, &self.s3.env())
            .unwrap_or_else(|e| panic!("broker {id}: {e:#}"))
    }
}

/// The brokers a client sees in Metadata, and each partition's leader.
fn cluster_view(broker: &Broker, topic: &str) -> (BTreeSet<i32>, Vec<i32>) {
    let consumer = broker.consumer(&[]);
    let md = consumer
        .fetch_metadata(Some(topic), OP_TIMEOUT)
        .expect("metadata");
    let brokers = md.brokers().iter().map(|b| b.id()).collect();
    let leaders = md.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.leader())
        .collect();
    (brokers, leaders)
}

fn wait_for_brokers(broker: &Broker, topic: &str, want: &[i32]) -> Vec<i32> {
    let want: BTreeSet<i32> = want.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (seen, leaders) = cluster_view(broker, topic);
        if seen == want {
            return leaders;
        }
        assert!(
            Instant::now() < deadline,
            "brokers {seen:?} listed, wanted {want:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn brokers_share_topics_groups_and_partitions() {
    let stores = SharedStores::start();
    let topic = unique("shared");
    // Written through broker 1 while it is the only broker.
    let a = stores.broker(1);
    a.create_topic(&topic, 6, &[]);
    let expected = crate::common::produce_generated(&a, &topic, 6, 600, 7, &[]);

    let b = stores.broker(2);
    let c = stores.broker(3);
    let leaders = wait_for_brokers(&c, &topic, &[1, 2, 3]);
    let spread: BTreeSet<i32> = leaders.iter().copied().collect();
    assert!(spread.len() >= 2, "6 partitions led by {leaders:?}");
    assert_eq!(
        wait_for_brokers(&a, &topic, &[1, 2, 3]),
        leaders,
        "every broker names the same leaders"
    );

    // Read back through broker 3, with broker 1 gone: the others serve
    // what it wrote, byte for byte.
    drop(a);
    wait_for_brokers(&c, &topic, &[2, 3]);
    let got = read_all(&c, &topic, 6, Duration::from_secs(60));
    crate::common::assert_same_log(&got, &expected);

    // One group, members bootstrapped at different brokers.
    let group = unique("g");
    let members: Vec<BaseConsumer> = [&b, &c]
        .iter()
        .map(|br| {
            let m = consumer_from(
                br.client_config(),
                &group,
                &[
                    ("auto.offset.reset", "earliest"),
                    ("enable.auto.commit", "false"),
                ],
            );
            m.subscribe(&[&topic]).unwrap();
            m
        })
        .collect();
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < 600 {
        assert!(
            Instant::now() < deadline,
            "group read {} of 600 records",
            seen.len()
        );
        for m in &members {
            if let Some(Ok(msg)) = m.poll(Duration::from_millis(100)) {
                *seen.entry((msg.partition(), msg.offset())).or_default() += 1;
            }
        }
    }
    // (A partition that moves in a rebalance before its offsets are
    // committed is read again by its new owner, as in Kafka.)
    // Both members end up with a share of the partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts: Vec<usize> = members
            .iter()
            .map(|m| {
                let _ = m.poll(Duration::from_millis(100));
                m.assignment().map(|a| a.count()).unwrap_or(0)
            })
            .collect();
        if counts.iter().all(|n| *n > 0) && counts.iter().sum::<usize>() == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "assignments {counts:?}");
    }
    for m in &members {
        match m.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            // A member that read nothing has nothing to commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => panic!("commit failed: {e}"),
        }
    }
    // The CLI finds the coordinator from any broker.
    for br in [&b, &c] {
        let described = sluice_cli(&["groups", "describe", &group, "--bootstrap", &br.bootstrap()]);
        assert!(described.contains("members: 2"), "{described}");
        let listed = sluice_cli(&["groups", "list", "--bootstrap", &br.bootstrap()]);
        assert_eq!(listed.matches(group.as_str()).count(), 1, "{listed}");
    }
}

#[test]
fn concurrent_appends_through_two_brokers_never_collide() {
    let stores = SharedStores::start();
    let topic = unique("appends");
    let a = stores.broker(1);
    let b = stores.broker(2);
    a.create_topic(&topic, 2, &[]);
    wait_for_brokers(&b, &topic, &[1, 2]);

    // Two writers, each talking to its own broker, append to the same
    // partitions at once (raw Produce requests: a Kafka client would
    // send both to the partition's leader).
    const BATCHES: usize = 150;
    let writers: Vec<_> = [(&a, "A"), (&b, "B")]
        .iter()
        .map(|(broker, name)| {
            let mut conn = raw::connect(broker);
            let topic = topic.clone();
            let name = name.to_string();
            thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..BATCHES {
                    let partition = (i % 2) as i32;
                    let values: Vec<Vec<u8>> = (0..5)
                        .map(|j| format!("{name}-{}", i * 5 + j).into_bytes())
                        .collect();
                    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
                    let batch = raw::record_batch_of(&refs, (-1, -1, -1), sluice_tests::now_ms());
                    let corr = i as i32 + 1;
                    let body = raw::produce_v3_body(&topic, partition, &batch);
                    std::io::Write::write_all(&mut conn, &raw::frame(0, 3, corr, &body)).unwrap();
                    let raw::Reply::Frame(reply) = raw::read_reply(&mut conn) else {
                        panic!("{name} closed the connection");
                    };
                    let (err, base) = produce_result(&reply, corr);
                    assert_eq!(err, 0, "produce through {name} failed");
                    acked.push((partition, base));
                }
                acked
            })
        })
        .collect();
    let mut bases: Vec<(i32, i64)> = Vec::new();
    for w in writers {
        bases.extend(w.join().unwrap());
    }
    let unique_bases: BTreeSet<_> = bases.iter().collect();
    assert_eq!(
        unique_bases.len(),
        bases.len(),
        "two batches got the same offsets"
    );

    let log = read_all(&a, &topic, 2, Duration::from_secs(60));
    let mut total = 0;
    for (partition, recs) in &log {
        let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
        let want: Vec<i64> = (0..recs.len() as i64).collect();
        assert_eq!(offsets, want, "partition {partition} has gaps or repeats");
        // Each writer's records keep their order.
        let mut last: HashMap<String, i64> = HashMap::new();
        for r in recs {
            let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
            let (name, seq) = v.split_once('-').unwrap();
            let seq: i64 = seq.parse().unwrap();
            if let Some(prev) = last.insert(name.to_string(), seq) {
                assert!(
                    seq > prev,
                    "{name}'s record {seq} after {prev} in {partition}"
                );
            }
        }
        total += recs.len();
    }
    assert_eq!(total, 2 * BATCHES * 5);
}

#[test]
fn a_killed_broker_loses_nothing_and_its_work_moves() {
    let stores = SharedStores::start();
    let topic = unique("failover");
    let brokers: Vec<Broker> = (1..=3).map(|id| stores.broker(id)).collect();
    brokers[0].create_topic(&topic, 6, &[]);
    wait_for_brokers(&brokers[0], &topic, &[1, 2, 3]);
    let bootstrap = brokers
        .iter()
        .map(|b| b.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let mut cfg = brokers[0].client_config();
    cfg.set("bootstrap.servers", &bootstrap);

    // A producer keeps producing while a group of two consumes.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = producer_from(cfg.clone(), SAFE_PRODUCER);
    let group = unique("failover-g");
    let mut consumers: Vec<BaseConsumer> = (0..2)
        .map(|_| {
            let c = consumer_from(
                cfg.clone(),
                &group,
                &[
                    ("auto.offset.reset", "earliest"),
                    ("session.timeout.ms", "6000"),
                ],
            );
            c.subscribe(&[&topic]).unwrap();
            c
        })
        .collect();
    // How many records the producer has sent so far.
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent = {
        let stop = stop.clone();
        let topic = topic.clone();
        let progress = progress.clone();
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                progress.store(n, Ordering::Relaxed);
                let value = format!("r{n}");
                let key = format!("k{n}");
                if producer
                    .send(
                        BaseRecord::with_opaque_to(&topic, n as usize)
                            .key(&key)
                            .payload(&value),
                    )
                    .is_ok()
                {
                    n += 1;
                }
                if n.is_multiple_of(20) {
                    thread::sleep(Duration::from_millis(10));
                }
            }
            producer.flush(Duration::from_secs(120)).expect("flush");
            (n, producer.context().take())
        })
    };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let poll_for = |consumers: &mut Vec<BaseConsumer>, seen: &mut BTreeSet<String>, d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            for c in consumers.iter() {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                    seen.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into());
                }
            }
        }
    };
    poll_for(&mut consumers, &mut seen, Duration::from_secs(4));
    assert!(!seen.is_empty(), "nothing consumed before the kill");

    // Kill the broker archiving the topic.
    let took_archiver = format!("took lease kind=\"archiver\" name=\"{topic}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    let archiver = loop {
        if let Some(i) = brokers
            .iter()
            .position(|b| b.log().contains(&took_archiver))
        {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no broker took the archiver lease"
        );
        thread::sleep(Duration::from_millis(100));
    };
    let mut brokers = brokers;
    let mut victim = brokers.remove(archiver);
    victim.kill9();
    let sent_at_kill = progress.load(Ordering::Relaxed);
    poll_for(&mut consumers, &mut seen, Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let (sent_n, reports) = sent.join().unwrap();
    let acked: BTreeSet<String> = reports
        .iter()
        .filter(|d| d.error.is_none())
        .map(|d| format!("r{}", d.id))
        .collect();
    assert!(
        acked.len() as u64 > sent_n / 2,
        "{} of {sent_n} acked",
        acked.len()
    );
    // The producer failed over: records sent after the kill were acked too.
    let after_kill = reports
        .iter()
        .filter(|d| d.error.is_none() && d.id as u64 > sent_at_kill)
        .count();
    assert!(
        after_kill > 1000,
        "only {after_kill} records sent after the kill were acked ({sent_n} sent, {sent_at_kill} before the kill)"
    );

    // Every acknowledged record reaches the group.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !acked.is_subset(&seen) {
        assert!(
            Instant::now() < deadline,
            "{} acked records never consumed",
            acked.difference(&seen).count()
        );
        poll_for(&mut consumers, &mut seen, Duration::from_millis(500));
    }
    // Its archiver lease moved to a survivor.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !brokers.iter().any(|b| b.log().contains(&took_archiver)) {
        assert!(
            Instant::now() < deadline,
            "no survivor took the archiver lease"
        );
        thread::sleep(Duration::from_millis(100));
    }

    // The archiver goes on elsewhere: the table holds each stored record
    // once, acknowledged ones included.
    let (lo, hi): (Vec<i64>, Vec<i64>) = (0..6).map(|p| brokers[0].watermarks(&topic, p)).unzip();
    let stored: i64 = hi.iter().sum::<i64>() - lo.iter().sum::<i64>();
    crate::storage::wait_for_table_rows(&brokers[1], &topic, stored);
}

/// (error code, base offset) of a one-partition Produce v3 response.
fn produce_result(f: &[u8], correlation_id: i32) -> (i16, i64) {
    let mut c = crate::common::Dec(f);
    assert_eq!(c.i32(), correlation_id);
    assert_eq!(c.i32(), 1, "one topic in the response");
    c.str();
    assert_eq!(c.i32(), 1, "one partition in the response");
    c.i32();
    (c.i16(), c.i64())
}

#[test]
fn unreachable_stores_stop_startup_with_a_clear_error() {
    let s3 = S3Server::start().expect("start the S3 server");
    let endpoint = s3.endpoint();
    let closed = format!("127.0.0.1:{}", sluice_tests::free_port());
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("m.db").display());
    let cases = [
        (
            // Nothing listens there.
            vec![
                "--metadata-url".to_string(),
                format!("postgres://sluice@{closed}/sluice"),
            ],
            "cannot open the metadata store",
        ),
        (
            // The server answers, the bucket does not exist.
            vec![
                "--metadata-url".to_string(),
                sqlite,
                "--object-store-url".into(),
                "s3://no-such-bucket/x".into(),
                "--s3-endpoint".into(),
                endpoint,
            ],
            "cannot open the object store at s3://no-such-bucket/x",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = match Broker::try_start_env(&args, &s3.env()) {
            Ok(_) => panic!("a broker started with {args:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(expected), "{args:?}:\n{err}");
    }
}
