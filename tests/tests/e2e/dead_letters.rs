//! `sluice.validation.mode`: `dlq` stores the valid records of a batch and
//! sends the invalid ones to a dead-letter topic with headers saying why;
//! `reject` (the default) refuses the batch whole.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use sluice_tests::{Broker, Delivery, Rec, expect_success, orders, run_python};

use crate::common::produce_all;
use crate::raw::{
    Reply, connect, frame, init_producer_id_v0_body, init_producer_id_v0_result, produce_v3_body,
    produce_v3_result, read_reply, record_batch_of,
};

const READ_TIMEOUT: Duration = Duration::from_secs(60);
const PY_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads partition 0 of a topic with kafka-python and confluent-kafka and
/// prints the offsets each saw, kafka-python's final position, and any
/// consumer errors.
const PYTHON_READERS: &str = r#"
import json, sys
from kafka import KafkaConsumer, TopicPartition
from confluent_kafka import Consumer, KafkaError, TopicPartition as CTP

addr, topic = sys.argv[1], sys.argv[2]
out = {}
kc = KafkaConsumer(bootstrap_servers=[addr], enable_auto_commit=False, consumer_timeout_ms=5000)
tp = TopicPartition(topic, 0)
kc.assign([tp])
kc.seek_to_beginning(tp)
out['kafka_python'] = [m.offset for m in kc]
out['kafka_python_position'] = kc.position(tp)
kc.close()
cc = Consumer({'bootstrap.servers': addr, 'group.id': 'py-readers', 'enable.auto.commit': False,
               'enable.partition.eof': True})
cc.assign([CTP(topic, 0, 0)])
offsets, errors = [], []
while True:
    m = cc.poll(10)
    if m is None:
        errors.append('no end of partition within 10 s')
        break
    if m.error():
        if m.error().code() == KafkaError._PARTITION_EOF:
            break
        errors.append(str(m.error()))
        continue
    offsets.append(m.offset())
cc.close()
out['confluent_kafka'] = offsets
out['confluent_kafka_errors'] = errors
print(json.dumps(out))
"#;

/// Order `n` as a framed record with a header naming it; `valid = false`
/// breaks the email rule.
fn order(schema_id: u32, n: u64, valid: bool) -> Rec {
    Rec {
        partition: 0,
        offset: -1,
        key: Some(format!("order-{n}").into_bytes()),
        value: Some(orders::frame(schema_id, &orders::encode_order(n, valid))),
        headers: vec![("n".to_owned(), Some(n.to_string().into_bytes()))],
        timestamp: rdkafka::Timestamp::CreateTime(1_790_000_000_000 + n as i64),
    }
}

fn header<'a>(r: &'a Rec, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| std::str::from_utf8(v).expect("UTF-8 header"))
}

fn metric(broker: &Broker, name: &str, topic: &str) -> f64 {
    let (status, body) =
        orders::http(&broker.http_addr(), "GET", "/metrics", None).expect("GET /metrics");
    assert_eq!(status, 200);
    let prefix = format!("{name}{{topic=\"{topic}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Produces records in rounds, one batch per round (all records of a round
/// are queued before the producer sends; `linger.ms` keeps them together).
/// Returns each record with the offset its delivery report gave.
fn produce_rounds(
    producer: &rdkafka::producer::ThreadedProducer<sluice_tests::DeliveryLog>,
    topic: &str,
    rounds: &[Vec<Rec>],
) -> Vec<Rec> {
    let mut out = Vec::new();
    for round in rounds {
        let reports: Vec<Delivery> = produce_all(producer, topic, round, Duration::from_secs(60));
        assert_eq!(reports.len(), round.len(), "missing delivery reports");
        for (d, r) in reports.iter().zip(round) {
            // In dlq mode the invalid records are handled as configured:
            // their delivery succeeds too.
            assert!(d.error.is_none(), "delivery failed: {d:?}");
            let mut r = r.clone();
            r.offset = d.offset;
            out.push(r);
        }
    }
    out
}

/// A topic in dlq mode, produced to by an idempotent librdkafka producer
/// (acks=all, gzip) in batches that mix valid and invalid orders, including
/// batches with no valid record at all (one of them last in the log).
#[test]
fn dlq_mode_stores_valid_records_and_dead_letters_the_others() {
    let broker = Broker::start();
    let schema_id = orders::register_order_schema(&broker.registry_addr(), "dlq-orders-value")
        .expect("register the order schema");
    broker.create_topic("dlq-orders", 1, &[("sluice.validation.mode", "dlq")]);
    let producer = broker.producer(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", "50"),
        ("compression.type", "gzip"),
    ]);
    let mut n = 0u64;
    let mut round = |invalid: &[usize], len: usize| -> Vec<Rec> {
        (0..len)
            .map(|i| {
                n += 1;
                order(schema_id, n, !invalid.contains(&i))
            })
            .collect()
    };
    let rounds = vec![
        round(&[1, 4, 7], 8), // the last record of the batch is invalid
        round(&[0, 1, 2, 3], 4),
        round(&[], 5),
        round(&[0, 1, 2], 3), // nothing valid, at the end of the log
    ];
    let sent = produce_rounds(&producer, "dlq-orders", &rounds);
    let offsets: Vec<i64> = sent.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (0..20).collect::<Vec<i64>>(),
        "every record is acknowledged at the offset it would have had with no record removed"
    );
    let is_valid = |r: &Rec| {
        let n: u64 = header(r, "n").unwrap().parse().unwrap();
        r.value.as_deref() == Some(&orders::frame(schema_id, &orders::encode_order(n, true))[..])
    };
    let (valid, invalid): (Vec<Rec>, Vec<Rec>) = sent.iter().cloned().partition(is_valid);
    assert_eq!((valid.len(), invalid.len()), (10, 10));
    assert_eq!(broker.watermarks("dlq-orders", 0), (0, 20));
    assert_eq!(broker.watermarks("dlq-orders.dlq", 0), (0, 10));
    let log = broker.log();
    assert!(
        log.contains("kept=0"),
        "a batch without valid records was produced (and stored empty)"
    );

    // The topic holds exactly the valid records, at their original offsets;
    // the consumer crosses the gaps and the empty batches, including the
    // one at the end of the log, without an error.
    let read = |topic: &str| -> Vec<Rec> {
        let got = broker
            .read_partitions(topic, &[(0, Offset::Beginning)], READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("reading {topic}: {e:#}"));
        got[&0].clone()
    };
    assert_eq!(read("dlq-orders"), valid);
    if let Some(out) = run_python(
        PYTHON_READERS,
        &[&broker.bootstrap(), "dlq-orders"],
        PY_TIMEOUT,
    ) {
        let stdout = expect_success("Python readers", &out);
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("bad output ({e}): {stdout}"));
        let want: Vec<i64> = valid.iter().map(|r| r.offset).collect();
        assert_eq!(v["kafka_python"], serde_json::json!(want), "{v}");
        assert_eq!(v["kafka_python_position"], 20, "{v}");
        assert_eq!(v["confluent_kafka"], serde_json::json!(want), "{v}");
        assert_eq!(v["confluent_kafka_errors"], serde_json::json!([]), "{v}");
    }

    // The dead-letter topic holds exactly the invalid ones, in order, with
    // their key, value, timestamp and headers, plus why and where from.
    let dead = read("dlq-orders.dlq");
    assert_eq!(dead.len(), invalid.len());
    for (i, (d, original)) in dead.iter().zip(&invalid).enumerate() {
        assert_eq!(d.offset, i as i64);
        assert_eq!(d.key, original.key);
        assert_eq!(d.value, original.value);
        assert_eq!(d.timestamp, original.timestamp);
        assert_eq!(
            d.headers[0], original.headers[0],
            "original headers come first"
        );
        let reason = header(d, "sluice.dlq.reason").expect("reason header");
        assert!(
            reason.contains("invalid value") && reason.contains("email"),
            "{reason}"
        );
        assert_eq!(header(d, "sluice.dlq.topic"), Some("dlq-orders"));
        assert_eq!(header(d, "sluice.dlq.partition"), Some("0"));
        let offset = original.offset.to_string();
        assert_eq!(header(d, "sluice.dlq.offset"), Some(offset.as_str()));
        assert_eq!(
            header(d, "sluice.dlq.schema.subject"),
            Some("dlq-orders-value")
        );
    }

    // Producing goes on normally: offsets continue, sequences are accepted.
    let more = produce_rounds(&producer, "dlq-orders", &[round(&[2], 4), round(&[], 3)]);
    let offsets: Vec<i64> = more.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (20..27).collect::<Vec<i64>>());
    assert_eq!(broker.watermarks("dlq-orders", 0), (0, 27));
    assert_eq!(broker.watermarks("dlq-orders.dlq", 0), (0, 11));
    let all = read("dlq-orders");
    assert_eq!(all.len(), 16);
    assert_eq!(all.last().map(|r| r.offset), Some(26));
    assert_eq!(
        metric(
            &broker,
            "sluice_validation_dead_lettered_records_total",
            "dlq-orders"
        ),
        11.0
    );
}

/// A producer retry of a stored batch (same producer id, epoch and
/// sequence) is answered as a duplicate and writes no dead letters again.
#[test]
fn retried_batch_writes_its_dead_letters_once() {
    let broker = Broker::start();
    let schema_id = orders::register_order_schema(&broker.registry_addr(), "retried-value")
        .expect("register the order schema");
    broker.create_topic(
        "retried",
        1,
        &[
            ("sluice.validation.mode", "dlq"),
            ("sluice.dlq.topic", "retried-dead"),
        ],
    );
    let mut s = connect(&broker);
    s.write_all(&frame(22, 0, 1, &init_producer_id_v0_body()))
        .unwrap();
    let Reply::Frame(f) = read_reply(&mut s) else {
        panic!("InitProducerId closed the connection");
    };
    let (err, pid, epoch) = init_producer_id_v0_result(&f, 1);
    assert_eq!(err, 0, "InitProducerId");
    let value = |n: u64, valid: bool| orders::frame(schema_id, &orders::encode_order(n, valid));
    let (a, b, c) = (value(1, true), value(2, false), value(3, true));
    let ts = sluice_tests::now_ms();
    let first = record_batch_of(&[&a, &b, &c], (pid, epoch, 0), ts);
    let mut produce = |correlation_id: i32, batch: &[u8]| {
        s.write_all(&frame(
            0,
            3,
            correlation_id,
            &produce_v3_body("retried", 0, batch),
        ))
        .unwrap();
        match read_reply(&mut s) {
            Reply::Frame(f) => produce_v3_result(&f, correlation_id),
            Reply::Closed => panic!("Produce closed the connection"),
        }
    };
    assert_eq!(produce(2, &first), (0, 0), "first send");
    assert_eq!(
        produce(3, &first),
        (0, 0),
        "retry: the stored batch's offset"
    );
    assert_eq!(broker.watermarks("retried", 0), (0, 3));
    assert_eq!(
        broker.watermarks("retried-dead", 0),
        (0, 1),
        "one dead letter, not two"
    );
    // The next sequence follows the whole batch (three records), and a
    // batch of only invalid records still takes its offset.
    let next = record_batch_of(&[&b], (pid, epoch, 3), ts);
    assert_eq!(produce(4, &next), (0, 3));
    assert_eq!(produce(5, &next), (0, 3), "retry of an emptied batch");
    let last = record_batch_of(&[&a], (pid, epoch, 4), ts);
    assert_eq!(produce(6, &last), (0, 4));
    assert_eq!(broker.watermarks("retried", 0), (0, 5));
    let dead = broker
        .read_partitions("retried-dead", &[(0, Offset::Beginning)], READ_TIMEOUT)
        .unwrap();
    let offsets: Vec<Option<&str>> = dead[&0]
        .iter()
        .map(|r| header(r, "sluice.dlq.offset"))
        .collect();
    assert_eq!(offsets, [Some("1"), Some("3")]);
    let kept = broker
        .read_partitions("retried", &[(0, Offset::Beginning)], READ_TIMEOUT)
        .unwrap();
    let offsets: Vec<i64> = kept[&0].iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 2, 4]);
}

/// Reject mode, named explicitly, is unchanged: a batch with an invalid
/// record is refused whole with INVALID_RECORD, nothing of it is stored,
/// the other partition of the same request is unaffected, and no
/// dead-letter topic appears.
#[test]
fn reject_mode_refuses_the_whole_batch() {
    let broker = Broker::start();
    let schema_id = orders::register_order_schema(&broker.registry_addr(), "strict-value")
        .expect("register the order schema");
    broker.create_topic("strict", 2, &[("sluice.validation.mode", "reject")]);
    let producer = broker.producer(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", "50"),
    ]);
    let mut records: Vec<Rec> = [(1, true), (2, false), (3, true)]
        .into_iter()
        .map(|(n, valid)| order(schema_id, n, valid))
        .collect();
    for n in [4, 5] {
        let mut r = order(schema_id, n, true);
        r.partition = 1;
        records.push(r);
    }
    let reports = produce_all(&producer, "strict", &records, Duration::from_secs(60));
    let outcome: BTreeMap<usize, Option<KafkaError>> =
        reports.iter().map(|d| (d.id, d.error.clone())).collect();
    let invalid = Some(KafkaError::MessageProduction(
        RDKafkaErrorCode::InvalidRecord,
    ));
    for id in 0..3 {
        assert_eq!(outcome[&id], invalid, "record {id} of the refused batch");
    }
    for id in 3..5 {
        assert_eq!(outcome[&id], None, "record {id} on the other partition");
    }
    assert_eq!(broker.watermarks("strict", 0), (0, 0));
    assert_eq!(broker.watermarks("strict", 1), (0, 2));
    assert!(!broker.topics().contains_key("strict.dlq"));
    // The idempotent producer goes on after the refusal.
    let after = produce_all(
        &producer,
        "strict",
        &[order(schema_id, 6, true)],
        Duration::from_secs(60),
    );
    assert_eq!(after[0].error, None);
    assert_eq!(after[0].offset, 0);
}

/// A consumer following the end of a dlq-mode topic receives many batches
/// left empty (every record invalid), each fetched on its own. Sent as
/// plain empty batches, librdkafka would report "message size too large"
/// from the eleventh on; the broker sends them as control batches, which
/// it skips quietly.
#[test]
fn tailing_consumer_crosses_emptied_batches_quietly() {
    use rdkafka::consumer::Consumer;
    let broker = Broker::start();
    let schema_id = orders::register_order_schema(&broker.registry_addr(), "tail-value")
        .expect("register the order schema");
    broker.create_topic("tail", 1, &[("sluice.validation.mode", "dlq")]);
    let producer = broker.producer(&[("enable.idempotence", "true"), ("acks", "all")]);
    let consumer = broker.consumer(&[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("tail", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut errors = Vec::new();
    let mut received = Vec::new();
    let poll_for = |ms: u64, errors: &mut Vec<String>, received: &mut Vec<i64>| {
        let until = std::time::Instant::now() + Duration::from_millis(ms);
        while std::time::Instant::now() < until {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => received.push(rdkafka::Message::offset(&m)),
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => errors.push(e.to_string()),
            }
        }
    };
    poll_for(1000, &mut errors, &mut received);
    for n in 0..16 {
        let sent = produce_rounds(&producer, "tail", &[vec![order(schema_id, n, false)]]);
        assert_eq!(sent[0].offset, n as i64);
        poll_for(700, &mut errors, &mut received);
    }
    let sent = produce_rounds(&producer, "tail", &[vec![order(schema_id, 99, true)]]);
    assert_eq!(sent[0].offset, 16);
    poll_for(2000, &mut errors, &mut received);
    assert_eq!(received, [16]);
    assert!(errors.is_empty(), "{errors:?}");
}
