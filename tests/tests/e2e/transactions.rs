//! Transactions through librdkafka (the `rdkafka` crate): commit, abort,
//! abort after a failure, zombie fencing, the transaction timeout and
//! consume-transform-produce, each with exact counts of what read_committed
//! and read_uncommitted consumers see, and the topic's table holding only
//! committed records.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_tests::{Broker, DeliveryLog, unique};

use crate::lakehouse::{sluice_cli, wait_for_table_rows};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

fn txn_producer(
    broker: &Broker,
    id: &str,
    extra: &[(&str, &str)],
) -> ThreadedProducer<DeliveryLog> {
    let mut settings = vec![("transactional.id", id), ("linger.ms", "5")];
    settings.extend_from_slice(extra);
    let p = broker.producer(&settings);
    p.init_transactions(TXN_TIMEOUT).expect("init_transactions");
    p
}

/// Sends `n` records `{tag}-{i}` to `partition` and waits for delivery.
fn send(p: &ThreadedProducer<DeliveryLog>, topic: &str, partition: i32, tag: &str, n: usize) {
    for i in 0..n {
        let value = format!("{tag}-{i}");
        let key = format!("k{i}");
        loop {
            match p.send(
                BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, i)
                    .partition(partition)
                    .key(key.as_bytes())
                    .payload(value.as_bytes()),
            ) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err((e, _)) => panic!("send failed: {e}"),
            }
        }
    }
    p.flush(TXN_TIMEOUT).expect("flush");
}

/// Every value in the partitions of `topic`, read from the start to the
/// end as a consumer of `isolation` sees it.
fn read_values(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> BTreeMap<i32, Vec<String>> {
    let consumer = broker.consumer(&[("isolation.level", isolation)]);
    let starts: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    broker
        .read_partitions_with(&consumer, topic, &starts, Duration::from_secs(60))
        .unwrap()
        .into_iter()
        .map(|(p, recs)| {
            let values = recs
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap())
                .collect();
            (p, values)
        })
        .collect()
}

fn tagged(values: &[String], tag: &str) -> usize {
    values
        .iter()
        .filter(|v| v.starts_with(&format!("{tag}-")))
        .count()
}

/// The high watermark and, for read_committed, the last stable offset.
fn end_offsets(broker: &Broker, topic: &str, partition: i32) -> (i64, i64) {
    // librdkafka reads committed by default.
    let plain = broker.consumer(&[("isolation.level", "read_uncommitted")]);
    let committed = broker.consumer(&[("isolation.level", "read_committed")]);
    let timeout = Duration::from_secs(10);
    let hw = plain.fetch_watermarks(topic, partition, timeout).unwrap().1;
    let lso = committed
        .fetch_watermarks(topic, partition, timeout)
        .unwrap()
        .1;
    (hw, lso)
}

fn txn_error_code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    match e {
        KafkaError::Transaction(e) => Some(e.code()),
        other => other.rdkafka_error_code(),
    }
}

#[test]
fn committed_and_aborted_transactions_are_seen_as_kafka_shows_them() {
    let broker = Broker::start_with(&["--table-commit-interval-ms", "200"]);
    let topic = unique("txn-basic");
    broker.create_topic(&topic, 2, &[]);
    let p = txn_producer(&broker, &unique("tid"), &[]);

    p.begin_transaction().unwrap();
    send(&p, &topic, 0, "c1", 10);
    send(&p, &topic, 1, "c1", 4);
    p.commit_transaction(TXN_TIMEOUT).unwrap();

    p.begin_transaction().unwrap();
    send(&p, &topic, 0, "a1", 7);
    send(&p, &topic, 1, "a1", 3);
    p.abort_transaction(TXN_TIMEOUT).unwrap();

    // Plain (non-transactional) records interleave with transactions.
    let plain = broker.producer(&[("linger.ms", "0")]);
    send(&plain, &topic, 1, "plain", 2);

    p.begin_transaction().unwrap();
    send(&p, &topic, 0, "c2", 5);
    p.commit_transaction(TXN_TIMEOUT).unwrap();

    // An open transaction holds the last stable offset back.
    p.begin_transaction().unwrap();
    send(&p, &topic, 0, "open", 6);
    let (hw, lso) = end_offsets(&broker, &topic, 0);
    // 10 + 7 + 5 + 6 records and three markers so far.
    assert_eq!(hw, 31, "high watermark of partition 0");
    assert_eq!(
        lso, 25,
        "last stable offset: the open transaction's first offset"
    );
    let committed = read_values(&broker, &topic, 2, "read_committed");
    assert_eq!(committed[&0].len(), 15, "{:?}", committed[&0]);
    assert_eq!(tagged(&committed[&0], "open"), 0);
    // A group caught up to the last stable offset has no lag, though the
    // high watermark is further on.
    let group = unique("lagcheck");
    let consumer = group_consumer(&broker, &group);
    let mut at = TopicPartitionList::new();
    at.add_partition_offset(&topic, 0, Offset::Offset(25))
        .unwrap();
    consumer
        .commit(&at, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    let described = sluice_cli(&["groups", "describe", &group, "-b", &broker.bootstrap()]);
    let row: Vec<&str> = described
        .lines()
        .find(|l| l.starts_with(&topic))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        row.get(1..6),
        Some(&["0", "25", "31", "25", "0"][..]),
        "{described}"
    );

    p.commit_transaction(TXN_TIMEOUT).unwrap();
    let committed = read_values(&broker, &topic, 2, "read_committed");
    let uncommitted = read_values(&broker, &topic, 2, "read_uncommitted");
    assert_eq!(
        (
            tagged(&committed[&0], "c1"),
            tagged(&committed[&0], "c2"),
            tagged(&committed[&0], "open")
        ),
        (10, 5, 6)
    );
    assert_eq!(
        tagged(&committed[&0], "a1"),
        0,
        "no aborted record is read committed"
    );
    assert_eq!(committed[&0].len(), 21);
    assert_eq!(committed[&1].len(), 6, "{:?}", committed[&1]);
    assert_eq!(tagged(&committed[&1], "a1"), 0);
    assert_eq!(tagged(&committed[&1], "plain"), 2);
    // read_uncommitted sees the aborted records too, and never a marker.
    assert_eq!(uncommitted[&0].len(), 28);
    assert_eq!(uncommitted[&1].len(), 9);
    assert_eq!(end_offsets(&broker, &topic, 0), (32, 32));

    // The table holds exactly the committed records, no marker and no
    // aborted record.
    let table = topic.replace('-', "_");
    wait_for_table_rows(&broker, &table, 27);
    let count = |tag: &str| {
        format!(
            "sum(CASE WHEN starts_with(CAST(kafka_value AS VARCHAR), '{tag}-') THEN 1 ELSE 0 END)"
        )
    };
    let sql = sluice_cli(&[
        "sql",
        &format!(
            "SELECT {} AS aborted, {} AS committed FROM {table}",
            count("a1"),
            count("c1")
        ),
        "--http",
        &broker.http_addr(),
    ]);
    assert_eq!(
        sql.lines()
            .nth(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["0", "14"]),
        "{sql}"
    );

    // Reads of archived offsets (served from the table and the markers kept
    // beside it) show the same.
    std::thread::sleep(Duration::from_secs(1));
    let after = read_values(&broker, &topic, 2, "read_committed");
    assert_eq!(after, committed, "read_committed after archiving");
    let after = read_values(&broker, &topic, 2, "read_uncommitted");
    assert_eq!(after, uncommitted, "read_uncommitted after archiving");
}

#[test]
fn a_new_instance_fences_the_old_one_and_aborts_its_transaction() {
    let broker = Broker::start();
    let topic = unique("txn-fence");
    broker.create_topic(&topic, 1, &[]);
    let id = unique("tid");
    let old = txn_producer(&broker, &id, &[]);
    old.begin_transaction().unwrap();
    send(&old, &topic, 0, "zombie", 5);

    let new = txn_producer(&broker, &id, &[]);
    let err = old
        .commit_transaction(TXN_TIMEOUT)
        .expect_err("the fenced producer cannot commit");
    let code = txn_error_code(&err);
    assert!(
        matches!(
            code,
            Some(RDKafkaErrorCode::Fenced)
                | Some(RDKafkaErrorCode::ProducerFenced)
                | Some(RDKafkaErrorCode::InvalidProducerEpoch)
        ),
        "fencing error expected, got {err} ({code:?})"
    );

    new.begin_transaction().unwrap();
    send(&new, &topic, 0, "live", 3);
    new.commit_transaction(TXN_TIMEOUT).unwrap();
    let committed = read_values(&broker, &topic, 1, "read_committed");
    assert_eq!(tagged(&committed[&0], "zombie"), 0, "{:?}", committed[&0]);
    assert_eq!(tagged(&committed[&0], "live"), 3);
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let broker = Broker::start();
    let topic = unique("txn-timeout");
    broker.create_topic(&topic, 1, &[]);
    let id = unique("tid");
    let p = txn_producer(&broker, &id, &[("transaction.timeout.ms", "2000")]);
    p.begin_transaction().unwrap();
    send(&p, &topic, 0, "late", 4);
    // The coordinator aborts it; the LSO moves past the aborted records.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (hw, lso) = end_offsets(&broker, &topic, 0);
        if hw == 5 && lso == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "not aborted: hw {hw}, lso {lso}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = p
        .commit_transaction(TXN_TIMEOUT)
        .expect_err("a timed-out transaction cannot commit");
    assert!(txn_error_code(&err).is_some(), "{err}");
    let committed = read_values(&broker, &topic, 1, "read_committed");
    assert!(committed[&0].is_empty(), "{:?}", committed[&0]);
    let described = sluice_cli(&["transactions", "describe", &id, "-b", &broker.bootstrap()]);
    assert!(described.contains("CompleteAbort"), "{described}");
    // The abort bumped the epoch: the producer is fenced.
    assert!(described.contains("epoch 1"), "{described}");
    let listed = sluice_cli(&["transactions", "list", "-b", &broker.bootstrap()]);
    assert!(
        listed.contains(&id) && listed.contains("CompleteAbort"),
        "{listed}"
    );
}

#[test]
fn abort_after_a_failed_send_leaves_nothing_behind() {
    let broker = Broker::start();
    let topic = unique("txn-fail");
    broker.create_topic(&topic, 1, &[("max.message.bytes", "1000")]);
    let p = txn_producer(&broker, &unique("tid"), &[]);
    p.begin_transaction().unwrap();
    send(&p, &topic, 0, "before", 3);
    // Too large for the topic: the send fails, and the transaction must
    // be aborted.
    let big = vec![b'x'; 5000];
    p.send(
        BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, 99)
            .partition(0)
            .payload(&big),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    let _ = p.flush(TXN_TIMEOUT);
    assert!(p.context().failed() >= 1, "the oversized record fails");
    let err = p
        .commit_transaction(TXN_TIMEOUT)
        .expect_err("commit after a failed send");
    match &err {
        KafkaError::Transaction(e) => assert!(e.txn_requires_abort() || e.is_fatal(), "{err}"),
        other => panic!("unexpected error {other}"),
    }
    p.abort_transaction(TXN_TIMEOUT).unwrap();
    // The failed record left a gap in the producer's sequence numbers; as
    // with Kafka, librdkafka may need one more abort (which bumps the
    // epoch) before the next transaction commits.
    let mut attempts = 0;
    loop {
        attempts += 1;
        p.begin_transaction().unwrap();
        send(&p, &topic, 0, "after", 2);
        match p.commit_transaction(TXN_TIMEOUT) {
            Ok(()) => break,
            Err(KafkaError::Transaction(e)) if e.txn_requires_abort() && attempts < 3 => {
                p.abort_transaction(TXN_TIMEOUT).unwrap();
            }
            Err(e) => panic!("commit failed: {e}"),
        }
    }
    let committed = read_values(&broker, &topic, 1, "read_committed");
    assert_eq!(
        committed[&0],
        vec!["after-0".to_string(), "after-1".to_string()]
    );
}

fn group_consumer(broker: &Broker, group: &str) -> BaseConsumer {
    let mut cfg = broker.client_config();
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    cfg.create().unwrap()
}

#[test]
fn consume_transform_produce_commits_offsets_with_the_output() {
    let broker = Broker::start();
    let input = unique("txn-in");
    let output = unique("txn-out");
    broker.create_topic(&input, 1, &[]);
    broker.create_topic(&output, 1, &[]);
    let plain = broker.producer(&[("linger.ms", "0")]);
    send(&plain, &input, 0, "in", 50);

    let group = unique("ctp");
    let p = txn_producer(&broker, &unique("tid"), &[]);
    let run = |abort: bool, take: usize| -> usize {
        let consumer = group_consumer(&broker, &group);
        consumer.subscribe(&[input.as_str()]).unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < take && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                seen.push((m.offset(), m.payload().unwrap().to_vec()));
            }
        }
        assert_eq!(seen.len(), take, "input records read");
        p.begin_transaction().unwrap();
        for (_, v) in &seen {
            let out = format!("out-{}", String::from_utf8_lossy(v));
            p.send(
                BaseRecord::<[u8], [u8], usize>::with_opaque_to(&output, 0)
                    .partition(0)
                    .payload(out.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
        let mut offsets = TopicPartitionList::new();
        let next = seen.last().unwrap().0 + 1;
        offsets
            .add_partition_offset(&input, 0, Offset::Offset(next))
            .unwrap();
        let metadata = consumer.group_metadata().unwrap();
        p.send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)
            .unwrap();
        if abort {
            // Sent first: abort_transaction drops what is still queued.
            p.flush(TXN_TIMEOUT).unwrap();
            p.abort_transaction(TXN_TIMEOUT).unwrap();
        } else {
            p.commit_transaction(TXN_TIMEOUT).unwrap();
        }
        next as usize
    };
    // 20 processed and committed, then 10 processed and aborted (their
    // output and offsets vanish), then the remaining 30 processed again.
    assert_eq!(run(false, 20), 20);
    assert_eq!(run(true, 10), 30);
    assert_eq!(run(false, 30), 50);

    let committed = read_values(&broker, &output, 1, "read_committed");
    let expected: Vec<String> = (0..50).map(|i| format!("out-in-{i}")).collect();
    assert_eq!(
        committed[&0], expected,
        "each input record once in the output"
    );
    let uncommitted = read_values(&broker, &output, 1, "read_uncommitted");
    assert_eq!(
        uncommitted[&0].len(),
        60,
        "the aborted output is still in the log"
    );

    let consumer = group_consumer(&broker, &group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&input, 0);
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        offsets.find_partition(&input, 0).unwrap().offset(),
        Offset::Offset(50)
    );
}

const CONFLUENT_TRANSACTIONS: &str = r#"
import json, sys
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

addr, topic, tid = sys.argv[1], sys.argv[2], sys.argv[3]
admin = AdminClient({'bootstrap.servers': addr})
for _, f in admin.create_topics([NewTopic(topic, 1)]).items():
    f.result(timeout=30)

def producer(extra=None):
    conf = {'bootstrap.servers': addr, 'transactional.id': tid, 'linger.ms': 5}
    conf.update(extra or {})
    p = Producer(conf)
    p.init_transactions(30)
    return p

p = producer()
p.begin_transaction()
for i in range(10):
    p.produce(topic, value=b'commit-%d' % i, partition=0)
p.commit_transaction(30)
p.begin_transaction()
for i in range(4):
    p.produce(topic, value=b'abort-%d' % i, partition=0)
p.flush(30)  # (abort_transaction drops what is still queued)
p.abort_transaction(30)

# A second instance fences the first, whose open transaction is aborted.
p.begin_transaction()
for i in range(3):
    p.produce(topic, value=b'zombie-%d' % i, partition=0)
p.flush(30)
p2 = producer()
fenced = None
try:
    p.commit_transaction(30)
except KafkaException as e:
    fenced = e.args[0].name()
p2.begin_transaction()
p2.produce(topic, value=b'live-0', partition=0)
p2.commit_transaction(30)

def read(isolation):
    c = Consumer({'bootstrap.servers': addr, 'group.id': 'py-' + isolation,
                  'isolation.level': isolation, 'enable.auto.commit': False,
                  'auto.offset.reset': 'earliest', 'enable.partition.eof': True})
    c.assign([TopicPartition(topic, 0, 0)])
    values = []
    while True:
        m = c.poll(10)
        if m is None:
            raise SystemExit('timed out reading ' + isolation)
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                break
            raise SystemExit(str(m.error()))
        values.append(m.value().decode())
    c.close()
    return values

print(json.dumps({'fenced': fenced, 'committed': read('read_committed'),
                  'uncommitted': read('read_uncommitted')}))
"#;

#[test]
fn confluent_kafka_commits_aborts_and_is_fenced() {
    let broker = Broker::start();
    let topic = unique("txn-py");
    let Some(out) = sluice_tests::run_python(
        CONFLUENT_TRANSACTIONS,
        &[&broker.bootstrap(), &topic, &unique("tid")],
        Duration::from_secs(120),
    ) else {
        return;
    };
    let stdout = sluice_tests::expect_success("confluent-kafka transactions", &out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let fenced = v["fenced"].as_str().unwrap_or_default();
    assert!(
        ["_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"].contains(&fenced),
        "{v}"
    );
    let committed: Vec<String> = serde_json::from_value(v["committed"].clone()).unwrap();
    let mut expected: Vec<String> = (0..10).map(|i| format!("commit-{i}")).collect();
    expected.push("live-0".into());
    assert_eq!(committed, expected);
    let uncommitted: Vec<String> = serde_json::from_value(v["uncommitted"].clone()).unwrap();
    assert_eq!(uncommitted.len(), 18, "{uncommitted:?}");
}

/// Hand-encoded v0 requests of the transaction APIs, for exact error codes.
mod raw_txn {
    use crate::common::Dec;
    use crate::raw::{Reply, connect, frame, read_reply};
    use sluice_tests::Broker;

    fn string(s: &str, out: &mut Vec<u8>) {
        out.extend((s.len() as i16).to_be_bytes());
        out.extend(s.as_bytes());
    }

    fn call(broker: &Broker, api: i16, version: i16, body: &[u8]) -> Vec<u8> {
        let mut s = connect(broker);
        use std::io::Write;
        s.write_all(&frame(api, version, 7, body)).unwrap();
        match read_reply(&mut s) {
            Reply::Frame(f) => f,
            Reply::Closed => panic!("the broker closed the connection on API {api}"),
        }
    }

    /// InitProducerId v0: (error, producer id, epoch).
    pub fn init(broker: &Broker, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
        let mut b = vec![];
        string(id, &mut b);
        b.extend(timeout_ms.to_be_bytes());
        crate::raw::init_producer_id_v0_result(&call(broker, 22, 0, &b), 7)
    }

    /// EndTxn v0: the error code.
    pub fn end(broker: &Broker, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
        let mut b = vec![];
        string(id, &mut b);
        b.extend(pid.to_be_bytes());
        b.extend(epoch.to_be_bytes());
        b.push(u8::from(commit));
        let f = call(broker, 26, 0, &b);
        let mut d = Dec(&f);
        assert_eq!(d.i32(), 7);
        d.i32();
        let err = d.i16();
        d.end("EndTxn v0");
        err
    }

    /// AddPartitionsToTxn v0 for one partition: its error code.
    pub fn add(broker: &Broker, id: &str, pid: i64, epoch: i16, topic: &str) -> i16 {
        let mut b = vec![];
        string(id, &mut b);
        b.extend(pid.to_be_bytes());
        b.extend(epoch.to_be_bytes());
        b.extend(1i32.to_be_bytes());
        string(topic, &mut b);
        b.extend(1i32.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        let f = call(broker, 24, 0, &b);
        let mut d = Dec(&f);
        assert_eq!(d.i32(), 7);
        d.i32();
        let results = d.array(|d| {
            let _name = d.str();
            d.array(|d| (d.i32(), d.i16()))
        });
        d.end("AddPartitionsToTxn v0");
        results[0][0].1
    }
}

#[test]
fn bad_transaction_requests_get_kafkas_error_codes() {
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    const INVALID_TXN_STATE: i16 = 48;
    const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    let broker = Broker::start();
    let topic = unique("txn-raw");
    broker.create_topic(&topic, 1, &[]);
    let id = unique("tid");

    assert_eq!(
        raw_txn::end(&broker, &id, 1, 0, true),
        INVALID_PRODUCER_ID_MAPPING,
        "unknown id"
    );
    assert_eq!(
        raw_txn::init(&broker, &id, 0).0,
        INVALID_TRANSACTION_TIMEOUT
    );
    assert_eq!(
        raw_txn::init(&broker, &id, 16 * 60 * 1000).0,
        INVALID_TRANSACTION_TIMEOUT
    );
    let (err, pid, epoch) = raw_txn::init(&broker, &id, 60_000);
    assert_eq!((err, epoch), (0, 0));
    let (err, same, epoch) = raw_txn::init(&broker, &id, 60_000);
    assert_eq!(
        (err, same, epoch),
        (0, pid, 1),
        "a new instance bumps the epoch"
    );
    // The fenced epoch (v0 clients are told INVALID_PRODUCER_EPOCH, as Kafka
    // tells clients that predate PRODUCER_FENCED).
    assert_eq!(
        raw_txn::end(&broker, &id, pid, 0, true),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        raw_txn::add(&broker, &id, pid, 0, &topic),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        raw_txn::add(&broker, &id, pid + 100, 1, &topic),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(
        raw_txn::end(&broker, &id, pid, 1, true),
        INVALID_TXN_STATE,
        "nothing to commit"
    );
    assert_eq!(
        raw_txn::add(&broker, &id, pid, 1, "no-such-topic"),
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(raw_txn::add(&broker, &id, pid, 1, &topic), 0);
    assert_eq!(raw_txn::end(&broker, &id, pid, 1, false), 0);
    assert_eq!(
        raw_txn::end(&broker, &id, pid, 1, false),
        0,
        "a retried abort succeeds"
    );
    assert_eq!(
        raw_txn::end(&broker, &id, pid, 1, true),
        INVALID_TXN_STATE,
        "commit after abort"
    );

    // Nothing else broke: plain produce and consume still work.
    let plain = broker.producer(&[("linger.ms", "0")]);
    send(&plain, &topic, 0, "plain", 3);
    let values = read_values(&broker, &topic, 1, "read_committed");
    assert_eq!(values[&0].len(), 3);
}

const ACL_TRANSACTIONS: &str = r#"
import json, sys
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AclBinding, AclOperation, AclPermissionType,
    NewTopic, ResourcePatternType, ResourceType)

sasl = sys.argv[1]
def conf(user, password, **extra):
    c = {'bootstrap.servers': sasl, 'security.protocol': 'SASL_PLAINTEXT',
         'sasl.mechanisms': 'SCRAM-SHA-512', 'sasl.username': user,
         'sasl.password': password}
    c.update(extra)
    return c

admin = AdminClient(conf('admin', 'admin-pw'))
for t in ('ledger', 'open'):
    admin.create_topics([NewTopic(t, 1, 1)])[t].result(30)
bindings = [
    AclBinding(ResourceType.TRANSACTIONAL_ID, 'alice-', ResourcePatternType.PREFIXED,
               'User:alice', '*', AclOperation.WRITE, AclPermissionType.ALLOW),
    AclBinding(ResourceType.TOPIC, 'open', ResourcePatternType.LITERAL,
               'User:alice', '*', AclOperation.WRITE, AclPermissionType.ALLOW),
]
for f in admin.create_acls(bindings).values():
    f.result(30)

def name(e):
    return e.args[0].name()

out = {}
try:
    Producer(conf('alice', 'alice-pw', **{'transactional.id': 'bob-tx'})).init_transactions(20)
    out['foreign_id'] = 'ok'
except KafkaException as e:
    out['foreign_id'] = name(e)

p = Producer(conf('alice', 'alice-pw', **{'transactional.id': 'alice-tx'}))
p.init_transactions(20)
p.begin_transaction()
p.produce('ledger', value=b'not allowed')
p.flush(20)
try:
    p.commit_transaction(20)
    out['foreign_topic'] = 'ok'
except KafkaException as e:
    out['foreign_topic'] = name(e)
    p.abort_transaction(20)
p.begin_transaction()
p.produce('open', value=b'allowed')
p.commit_transaction(20)
out['allowed'] = 'ok'
from confluent_kafka import Consumer, TopicPartition
c = Consumer(conf('admin', 'admin-pw', **{'group.id': 'check', 'isolation.level': 'read_uncommitted',
             'enable.partition.eof': True, 'auto.offset.reset': 'earliest'}))
c.assign([TopicPartition('ledger', 0, 0)])
ledger = []
while True:
    m = c.poll(10)
    if m is None or (m.error() and m.error().code() == -191):
        break
    if not m.error():
        ledger.append(m.value().decode())
out['ledger'] = ledger
print(json.dumps(out))
"#;

#[test]
fn transactional_ids_and_topics_are_checked_against_acls() {
    use crate::sasl::{sasl_broker, set_user};
    let (broker, sasl) = sasl_broker(&[
        "--authorizer",
        "acl",
        "--super-users",
        "User:admin;User:ANONYMOUS",
    ]);
    set_user(&broker, "admin", "admin-pw");
    set_user(&broker, "alice", "alice-pw");
    let Some(out) = sluice_tests::run_python(ACL_TRANSACTIONS, &[&sasl], Duration::from_secs(120))
    else {
        return;
    };
    let stdout = sluice_tests::expect_success("transactions under ACLs", &out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        v["foreign_id"], "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "{v}"
    );
    // librdkafka fails the record before AddPartitionsToTxn when the topic's
    // metadata is refused too; either way the commit fails and nothing
    // reaches the topic.
    assert_ne!(v["foreign_topic"], "ok", "{v}");
    assert_eq!(v["ledger"], serde_json::json!([]), "{v}");
    assert_eq!(v["allowed"], "ok", "{v}");
}

/// Compiles and runs `tests/java/TxnClient.java` with the Java client's
/// jars (`SLUICE_TEST_JAVA_LIBS`, set by `tests/run`); `None` when the jars
/// or a JDK are not there.
fn run_java_client(args: &[&str]) -> Option<std::process::Output> {
    let Some(libs) = std::env::var_os("SLUICE_TEST_JAVA_LIBS") else {
        eprintln!("SLUICE_TEST_JAVA_LIBS is not set: skipping the Java client (tests/run sets it)");
        return None;
    };
    let classpath = format!("{}/*", std::path::Path::new(&libs).display());
    let classes = tempfile::tempdir().unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/java/TxnClient.java");
    let javac = sluice_tests::run_with_timeout(
        std::process::Command::new("javac").args([
            "-d",
            classes.path().to_str().unwrap(),
            "-cp",
            &classpath,
            source,
        ]),
        None,
        Duration::from_secs(120),
    )
    .unwrap();
    sluice_tests::expect_success("javac TxnClient.java", &javac);
    let run_classpath = format!("{}:{classpath}", classes.path().display());
    Some(
        sluice_tests::run_with_timeout(
            std::process::Command::new("java")
                .args(["-cp", &run_classpath, "TxnClient"])
                .args(args),
            None,
            Duration::from_secs(120),
        )
        .unwrap(),
    )
}

#[test]
fn the_java_client_commits_aborts_and_is_fenced() {
    let broker = Broker::start();
    let topic = unique("txn-java");
    broker.create_topic(&topic, 1, &[]);
    let Some(out) = run_java_client(&[&broker.bootstrap(), &topic, &unique("tid")]) else {
        return;
    };
    let stdout = sluice_tests::expect_success("the Java transactional client", &out);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fenced"], "ProducerFencedException", "{v}");
    let committed: Vec<String> = serde_json::from_value(v["committed"].clone()).unwrap();
    let mut expected: Vec<String> = (0..5).map(|i| format!("commit-{i}")).collect();
    expected.push("live-0".into());
    assert_eq!(committed, expected);
    let uncommitted: Vec<String> = serde_json::from_value(v["uncommitted"].clone()).unwrap();
    assert_eq!(uncommitted.len(), 11, "{uncommitted:?}");
}
