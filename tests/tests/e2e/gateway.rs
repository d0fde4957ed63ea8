//! `sluice gateway` in front of a Sluice broker: librdkafka clients talk only
//! to the gateway, which forwards to the broker, rewrites broker addresses
//! to its own, and validates produced records against the broker's registry
//! with the broker's own checks.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, Timestamp};
use sluice_tests::orders::{encode_order, frame as framed, register_order_schema};
use sluice_tests::{Broker, Gateway, OP_TIMEOUT, Rec, block_on};

use crate::common::{
    SAFE_PRODUCER, assert_all_acked, assert_same_log, expected_log, gen_record, produce_all,
};
use crate::groups::{Member, start_broker, wait_balanced, wait_until};
use crate::raw::{Reply, frame, read_reply, record_batch};

/// The broker's node id (its default `--broker-id`).
const NODE: i32 = 1;
const INVALID_RECORD: i16 = 87;

fn gateway_for(broker: &Broker) -> Gateway {
    Gateway::start(
        &broker.bootstrap(),
        &format!("http://{}", broker.registry_addr()),
    )
}

fn connect(gateway: &Gateway) -> TcpStream {
    let s = TcpStream::connect_timeout(&gateway.addr(), Duration::from_secs(5))
        .expect("connect to the gateway");
    s.set_nodelay(true).unwrap();
    s
}

/// Creates a topic through the gateway (CreateTopics is forwarded as is).
fn create_topic(gateway: &Gateway, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        gateway.client_config().create().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
    let res = block_on(admin.create_topics([&topic], &opts), OP_TIMEOUT)
        .expect("CreateTopics timed out")
        .expect("CreateTopics failed");
    assert!(res[0].is_ok(), "creating {name}: {res:?}");
}

/// Records produced through the gateway (an idempotent lz4 producer) read
/// back through it byte for byte; metadata names only gateway addresses; a
/// frame with an absurd size closes that connection alone.
#[test]
fn gateway_produce_consume_byte_exact() {
    let broker = Broker::start();
    let gateway = gateway_for(&broker);
    let topic = "through-gateway";
    let partitions = 4;
    create_topic(&gateway, topic, partitions);

    let consumer = gateway.consumer(&[]);
    let md = consumer
        .fetch_metadata(None, OP_TIMEOUT)
        .expect("metadata through the gateway");
    let brokers: Vec<(String, i32, i32)> = md
        .brokers()
        .iter()
        .map(|b| (b.host().to_string(), b.port(), b.id()))
        .collect();
    assert_eq!(
        brokers,
        vec![(
            "127.0.0.1".to_string(),
            i32::from(gateway.node_port(NODE)),
            NODE
        )],
        "metadata must advertise the gateway's node port, not the broker at {}",
        broker.bootstrap()
    );

    let base_ts = sluice_tests::now_ms() - 60_000;
    let records: Vec<Rec> = (0..3000)
        .map(|i| gen_record(11, i, partitions, base_ts))
        .collect();
    let mut cfg = SAFE_PRODUCER.to_vec();
    cfg.push(("compression.type", "lz4"));
    let producer = gateway.producer(&cfg);
    let reports = produce_all(&producer, topic, &records, Duration::from_secs(120));
    assert_all_acked(&reports, records.len());
    let expected = expected_log(&records, &reports);

    let starts: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    let got = broker
        .read_partitions_with(&consumer, topic, &starts, Duration::from_secs(120))
        .expect("read back through the gateway");
    assert_same_log(&got, &expected);
    // The broker holds exactly what was produced.
    for (p, recs) in &expected {
        assert_eq!(broker.watermarks(topic, *p), (0, recs.len() as i64));
    }

    // FindCoordinator v0 and DescribeCluster v0 on a raw connection name
    // the gateway's node port too.
    let node_port = i32::from(gateway.node_port(NODE));
    let mut raw = connect(&gateway);
    let mut key = vec![];
    key.extend(5i16.to_be_bytes());
    key.extend(b"group");
    let reply = call(&mut raw, &frame(10, 0, 7, &key));
    let mut d = crate::common::Dec(&reply);
    assert_eq!(d.i32(), 7);
    assert_eq!(d.i16(), 0, "FindCoordinator error");
    assert_eq!(d.i32(), NODE);
    assert_eq!((d.str(), d.i32()), ("127.0.0.1".to_string(), node_port));
    d.end("FindCoordinator v0");
    let reply = call(&mut raw, &describe_cluster_v0(8));
    let (brokers, controller) = describe_cluster_v0_result(&reply, 8);
    assert_eq!(controller, NODE);
    assert_eq!(brokers, vec![(NODE, "127.0.0.1".to_string(), node_port)]);

    // A frame claiming 2 GiB: that connection is closed, the gateway lives on.
    let mut bad = connect(&gateway);
    bad.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 18, 0, 0])
        .unwrap();
    assert!(matches!(read_reply(&mut bad), Reply::Closed));
    let again = gateway.consumer(&[]);
    again
        .fetch_metadata(Some(topic), OP_TIMEOUT)
        .expect("metadata after a bad frame");
    let log = gateway.log();
    assert!(log.contains("closing client connection"), "{log}");
    assert!(log.contains("listening for upstream node"), "{log}");
}

/// A DescribeCluster v0 request (flexible: request header v2).
fn describe_cluster_v0(correlation_id: i32) -> Vec<u8> {
    let client_id = b"sluice-raw-test";
    let mut payload = vec![];
    payload.extend(60i16.to_be_bytes());
    payload.extend(0i16.to_be_bytes());
    payload.extend(correlation_id.to_be_bytes());
    payload.extend((client_id.len() as i16).to_be_bytes());
    payload.extend(client_id);
    payload.push(0); // header tagged fields
    payload.push(0); // include_cluster_authorized_operations
    payload.push(0); // body tagged fields
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}

/// Parses a DescribeCluster v0 response: ((id, host, port) per broker, controller id).
fn describe_cluster_v0_result(f: &[u8], correlation_id: i32) -> (Vec<(i32, String, i32)>, i32) {
    let mut d = crate::common::Dec(f);
    // Compact strings and arrays here are short: one-byte lengths.
    let compact = |d: &mut crate::common::Dec<'_>| -> Option<String> {
        let n = d.take(1)[0] as usize;
        (n > 0).then(|| String::from_utf8(d.take(n - 1).to_vec()).expect("UTF-8"))
    };
    assert_eq!(d.i32(), correlation_id);
    assert_eq!(d.take(1), [0], "response header tagged fields");
    d.i32(); // throttle time
    assert_eq!(d.i16(), 0, "DescribeCluster error");
    compact(&mut d); // error message
    compact(&mut d); // cluster id
    let controller = d.i32();
    let n = d.take(1)[0] as usize - 1;
    let mut brokers = vec![];
    for _ in 0..n {
        let id = d.i32();
        let host = compact(&mut d).expect("host");
        let port = d.i32();
        compact(&mut d); // rack
        assert_eq!(d.take(1), [0], "broker tagged fields");
        brokers.push((id, host, port));
    }
    d.i32(); // authorized operations
    assert_eq!(d.take(1), [0], "body tagged fields");
    d.end("DescribeCluster v0");
    (brokers, controller)
}

/// One parsed partition of a Produce v8 response.
#[derive(Debug, PartialEq, Eq)]
struct ProducePartition {
    index: i32,
    error_code: i16,
    base_offset: i64,
    record_errors: Vec<(i32, Option<String>)>,
    error_message: Option<String>,
}

/// A Produce v8 request (acks as given) for `topic` with one batch per partition.
fn produce_v8(correlation_id: i32, acks: i16, topic: &str, parts: &[(i32, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![];
    b.extend((-1i16).to_be_bytes()); // null transactional id
    b.extend(acks.to_be_bytes());
    b.extend(10_000i32.to_be_bytes());
    b.extend(1i32.to_be_bytes());
    b.extend((topic.len() as i16).to_be_bytes());
    b.extend(topic.as_bytes());
    b.extend((parts.len() as i32).to_be_bytes());
    for (p, batch) in parts {
        b.extend(p.to_be_bytes());
        b.extend((batch.len() as i32).to_be_bytes());
        b.extend(batch);
    }
    frame(0, 8, correlation_id, &b)
}

fn produce_v8_result(f: &[u8], correlation_id: i32) -> Vec<ProducePartition> {
    let mut d = crate::common::Dec(f);
    assert_eq!(d.i32(), correlation_id);
    let mut out = vec![];
    for _ in 0..d.i32() {
        d.str();
        for _ in 0..d.i32() {
            let index = d.i32();
            let error_code = d.i16();
            let base_offset = d.i64();
            d.i64(); // log append time
            d.i64(); // log start offset
            let record_errors = d.array(|d| (d.i32(), d.nstr()));
            let error_message = d.nstr();
            out.push(ProducePartition {
                index,
                error_code,
                base_offset,
                record_errors,
                error_message,
            });
        }
    }
    d.i32(); // throttle time
    d.end("Produce v8");
    out.sort_by_key(|p| p.index);
    out
}

fn call(stream: &mut TcpStream, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).unwrap();
    match read_reply(stream) {
        Reply::Frame(f) => f,
        Reply::Closed => panic!("connection closed instead of an answer"),
    }
}

/// A schema-bound topic through the gateway: garbage and rule-breaking
/// records are refused with INVALID_RECORD and the broker's own per-record
/// message, valid partitions of the same request land, and a refused
/// acks=0 request gets no answer.
#[test]
fn gateway_validates_against_the_registry() {
    let broker = Broker::start();
    let id = register_order_schema(&broker.registry_addr(), "orders-value").expect("register");
    let gateway = gateway_for(&broker);
    create_topic(&gateway, "orders", 2);

    // librdkafka through the gateway.
    let producer = gateway.producer(&[("linger.ms", "0"), ("message.send.max.retries", "0")]);
    let send = |value: &[u8]| {
        producer
            .send(
                BaseRecord::<(), [u8], usize>::with_opaque_to("orders", 0)
                    .partition(0)
                    .payload(value),
            )
            .expect("enqueue");
        producer.flush(Duration::from_secs(30)).expect("flush");
        let mut reports = producer.context().take();
        assert_eq!(reports.len(), 1);
        reports.remove(0).error
    };
    let refused = Some(KafkaError::MessageProduction(
        RDKafkaErrorCode::InvalidRecord,
    ));
    assert_eq!(send(&framed(id, &encode_order(1, true))), None);
    assert_eq!(send(b"\x07garbage"), refused);
    assert_eq!(send(&framed(id, &encode_order(2, false))), refused);
    assert_eq!(send(&framed(id, &encode_order(3, true))), None);
    assert_eq!(broker.watermarks("orders", 0), (0, 2));

    // One request, a valid partition and a garbage one.
    let ts = sluice_tests::now_ms();
    let good = record_batch(&framed(id, &encode_order(4, true)), ts);
    let garbage = record_batch(b"\x07garbage", ts);
    let mut gw = connect(&gateway);
    let reply = call(
        &mut gw,
        &produce_v8(1, -1, "orders", &[(0, good), (1, garbage.clone())]),
    );
    let parts = produce_v8_result(&reply, 1);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!((parts[0].index, parts[0].error_code), (0, 0), "{parts:?}");
    assert_eq!(parts[0].base_offset, 2);
    let via_gateway = &parts[1];
    assert_eq!(via_gateway.error_code, INVALID_RECORD, "{via_gateway:?}");
    assert_eq!(via_gateway.record_errors.len(), 1, "{via_gateway:?}");
    let reason = via_gateway.record_errors[0].1.as_deref().unwrap_or("");
    assert!(
        reason.contains("schema registry wire format"),
        "per-record reason: {reason}"
    );
    assert_eq!(broker.watermarks("orders", 0), (0, 3));
    assert_eq!(broker.watermarks("orders", 1), (0, 0));

    // The broker answers the same garbage with the same words.
    let mut direct = TcpStream::connect_timeout(&broker.kafka_addr(), Duration::from_secs(5))
        .expect("connect to the broker");
    let reply = call(
        &mut direct,
        &produce_v8(2, -1, "orders", &[(1, garbage.clone())]),
    );
    let from_broker = produce_v8_result(&reply, 2);
    assert_eq!(
        &from_broker[0], via_gateway,
        "gateway and broker answers differ"
    );

    // acks=0 and every partition refused: no answer at all, so the next
    // answer on the connection is the next request's.
    gw.write_all(&produce_v8(3, 0, "orders", &[(1, garbage)]))
        .unwrap();
    let reply = call(&mut gw, &frame(18, 0, 4, &[]));
    assert_eq!(
        i32::from_be_bytes(reply[..4].try_into().unwrap()),
        4,
        "the ApiVersions answer comes next"
    );
    assert_eq!(broker.watermarks("orders", 1), (0, 0));
    assert!(gateway.log().contains("refused produce partition"));
}

/// A consumer group of two members through the gateway: both join and get
/// disjoint partitions (FindCoordinator answers name the gateway), consume
/// everything, commit; a new member of the group resumes after the commits.
#[test]
fn gateway_consumer_group_two_members() {
    let broker = start_broker();
    let gateway = gateway_for(&broker);
    let topic = "group-through-gateway";
    let partitions = 4;
    create_topic(&gateway, topic, partitions);
    let group = "gateway-group";

    let a = Member::start_with_config(gateway.client_config(), group, topic, "gw-a", &[]);
    let b = Member::start_with_config(gateway.client_config(), group, topic, "gw-b", &[]);
    let sets = wait_balanced(&broker, group, partitions, &[&a, &b]);
    assert!(sets.iter().all(|s| !s.is_empty()), "{sets:?}");

    let produce = |tag: &str, per_partition: i32| {
        let recs: Vec<Rec> = (0..per_partition)
            .flat_map(|n| (0..partitions).map(move |p| (p, n)))
            .map(|(p, n)| Rec {
                partition: p,
                offset: -1,
                key: Some(format!("{tag}-{p}-{n}").into_bytes()),
                value: Some(format!("value {tag} {p} {n}").into_bytes()),
                headers: vec![],
                timestamp: Timestamp::CreateTime(sluice_tests::now_ms()),
            })
            .collect();
        let producer = gateway.producer(&[("acks", "all"), ("linger.ms", "5")]);
        let reports = produce_all(&producer, topic, &recs, Duration::from_secs(60));
        assert_all_acked(&reports, recs.len());
        recs.len()
    };
    let first = produce("first", 25);
    let distinct = |members: &[&Member]| -> BTreeSet<(i32, i64)> {
        members
            .iter()
            .flat_map(|m| m.records())
            .map(|r| (r.partition, r.offset))
            .collect()
    };
    wait_until(
        "both members consume everything",
        Duration::from_secs(60),
        || {
            let n = distinct(&[&a, &b]).len();
            if n == first {
                Ok(())
            } else {
                Err(format!("{n} of {first}"))
            }
        },
    );
    for m in [&a, &b] {
        let own = m.assignment();
        assert!(
            m.records().iter().all(|r| own.contains(&r.partition)),
            "{} consumed outside its assignment {own:?}",
            m.name
        );
        m.commit_consumed();
    }
    a.close();
    b.close();

    let second = produce("second", 10);
    let c = Member::start_with_config(gateway.client_config(), group, topic, "gw-c", &[]);
    wait_until("the new member resumes", Duration::from_secs(60), || {
        let n = c.records().len();
        if n >= second {
            Ok(())
        } else {
            Err(format!("{n} of {second}"))
        }
    });
    let keys: Vec<String> = c
        .records()
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert!(
        keys.iter().all(|k| k.starts_with("second-")),
        "the new member must start at the committed offsets: {keys:?}"
    );
    assert_eq!(keys.len(), second, "{keys:?}");
    c.close();
    let log = gateway.log();
    assert!(!log.contains("upstream answered correlation id"), "{log}");
}
