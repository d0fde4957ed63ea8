//! Compatibility with the Python clients: kafka-python (pure Python protocol
//! implementation, opens with a newer ApiVersions than the broker supports)
//! and confluent-kafka (librdkafka based AdminClient).

use std::time::Duration;

use rdkafka::{Offset, Timestamp};
use sluice_tests::{Broker, Rec, expect_success, run_python};

use crate::common::{assert_all_acked, produce_all};

const PY_TIMEOUT: Duration = Duration::from_secs(120);

const KAFKA_PYTHON_PRODUCE: &str = r#"
import json, sys
from kafka import KafkaProducer
addr, topic, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = KafkaProducer(bootstrap_servers=[addr], acks='all', linger_ms=5,
                  request_timeout_ms=30000, max_block_ms=30000)
futures = []
for i in range(200):
    value = ('value %d ' % i).encode() + bytes(range(i % 256))
    futures.append(p.send(topic, key=b'py-%d' % i, value=value,
                          headers=[('i', str(i).encode()), ('empty', b'')],
                          partition=i % 2, timestamp_ms=base + i))
acks = []
for i, f in enumerate(futures):
    md = f.get(timeout=30)
    acks.append([i, md.partition, md.offset])
p.flush(timeout=30)
p.close(timeout=30)
print(json.dumps(acks))
"#;

const KAFKA_PYTHON_CONSUME: &str = r#"
import json, sys, time
from kafka import KafkaConsumer, TopicPartition
addr, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = KafkaConsumer(bootstrap_servers=[addr], group_id=None, enable_auto_commit=False,
                  auto_offset_reset='earliest', request_timeout_ms=30000)
tp = TopicPartition(topic, 0)
c.assign([tp])
c.seek_to_beginning(tp)
records = []
deadline = time.time() + 60
while len(records) < n and time.time() < deadline:
    for _, msgs in c.poll(timeout_ms=500).items():
        for m in msgs:
            records.append({
                'offset': m.offset,
                'key': None if m.key is None else m.key.hex(),
                'value': None if m.value is None else m.value.hex(),
                'headers': [[k, None if v is None else v.hex()] for k, v in m.headers],
                'ts': m.timestamp,
                'ts_type': m.timestamp_type,
            })
end = c.end_offsets([tp])[tp]
c.close()
print(json.dumps({'records': records, 'end': end}))
"#;

const CONFLUENT_ADMIN: &str = r#"
import json, sys
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, ResourceType)
a = AdminClient({'bootstrap.servers': sys.argv[1]})
md = a.list_topics(timeout=20)
topics = {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}
change = ConfigResource(ResourceType.TOPIC, 'py-admin', incremental_configs=[
    ConfigEntry('retention.ms', '7200000', incremental_operation=AlterConfigOpType.SET)])
for _, f in a.incremental_alter_configs([change], request_timeout=20).items():
    f.result(timeout=30)
cfg = {}
for _, f in a.describe_configs([ConfigResource(ResourceType.TOPIC, 'py-admin')],
                               request_timeout=20).items():
    for k, e in f.result(timeout=30).items():
        cfg[k] = e.value
bad = ConfigResource(ResourceType.TOPIC, 'py-admin', incremental_configs=[
    ConfigEntry('no.such.config', '1', incremental_operation=AlterConfigOpType.SET)])
bad_error = None
for _, f in a.incremental_alter_configs([bad], request_timeout=20).items():
    try:
        f.result(timeout=30)
    except Exception as e:
        bad_error = e.args[0].name() if e.args and hasattr(e.args[0], 'name') else str(e)
print(json.dumps({'topics': topics, 'brokers': len(md.brokers), 'config': cfg,
                  'unknown_key_error': bad_error}))
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn kafka_python_produce_and_consume() {
    let broker = Broker::start();
    broker.create_topic("py-in", 2, &[]);
    broker.create_topic("py-out", 1, &[]);
    let addr = broker.bootstrap();
    let base = sluice_tests::now_ms() - 60_000;

    // kafka-python produces, librdkafka reads.
    let Some(out) = run_python(
        KAFKA_PYTHON_PRODUCE,
        &[&addr, "py-in", &base.to_string()],
        PY_TIMEOUT,
    ) else {
        return;
    };
    let stdout = expect_success("kafka-python producer", &out);
    let acks: Vec<(usize, i32, i64)> = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad producer output ({e}): {stdout}"));
    assert_eq!(acks.len(), 200);
    for (i, p, off) in &acks {
        assert_eq!(*p, (*i % 2) as i32);
        assert_eq!(
            *off,
            (*i / 2) as i64,
            "kafka-python record {i} acknowledged at offset {off}"
        );
    }
    let got = broker
        .read_partitions(
            "py-in",
            &[(0, Offset::Beginning), (1, Offset::Beginning)],
            Duration::from_secs(60),
        )
        .unwrap();
    for p in 0..2 {
        let recs = &got[&p];
        assert_eq!(recs.len(), 100, "partition {p}");
        for (n, r) in recs.iter().enumerate() {
            let i = n * 2 + p as usize;
            let mut value = format!("value {i} ").into_bytes();
            value.extend((0..(i % 256)).map(|b| b as u8));
            let want = Rec {
                partition: p,
                offset: n as i64,
                key: Some(format!("py-{i}").into_bytes()),
                value: Some(value),
                headers: vec![
                    ("i".to_string(), Some(i.to_string().into_bytes())),
                    ("empty".to_string(), Some(vec![])),
                ],
                timestamp: Timestamp::CreateTime(base + i as i64),
            };
            assert_eq!(r, &want);
        }
    }

    // librdkafka produces (gzip), kafka-python reads.
    let recs: Vec<Rec> = (0..150)
        .map(|i| Rec {
            partition: 0,
            offset: -1,
            key: if i % 10 == 0 {
                None
            } else {
                Some(format!("rk-{i}").into_bytes())
            },
            value: Some(format!("payload {i} {}", "z".repeat(i)).into_bytes()),
            headers: vec![(
                "h".to_string(),
                if i % 3 == 0 {
                    None
                } else {
                    Some(vec![i as u8])
                },
            )],
            timestamp: Timestamp::CreateTime(base + 1_000 + i as i64),
        })
        .collect();
    let producer = broker.producer(&[("acks", "all"), ("compression.type", "gzip")]);
    let reports = produce_all(&producer, "py-out", &recs, Duration::from_secs(60));
    assert_all_acked(&reports, recs.len());

    let out = run_python(KAFKA_PYTHON_CONSUME, &[&addr, "py-out", "150"], PY_TIMEOUT).unwrap();
    let stdout = expect_success("kafka-python consumer", &out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad consumer output ({e}): {stdout}"));
    assert_eq!(
        v["end"].as_i64(),
        Some(150),
        "end offset seen by kafka-python"
    );
    let got = v["records"].as_array().unwrap();
    assert_eq!(
        got.len(),
        150,
        "kafka-python consumed {} records",
        got.len()
    );
    for (i, (g, r)) in got.iter().zip(&recs).enumerate() {
        assert_eq!(g["offset"].as_i64(), Some(i as i64));
        assert_eq!(
            g["key"].as_str().map(str::to_string),
            r.key.as_deref().map(hex),
            "key {i}"
        );
        assert_eq!(
            g["value"].as_str().map(str::to_string),
            r.value.as_deref().map(hex),
            "value {i}"
        );
        let want_headers: Vec<serde_json::Value> = r
            .headers
            .iter()
            .map(|(k, v)| serde_json::json!([k, v.as_deref().map(hex)]))
            .collect();
        assert_eq!(
            g["headers"].as_array().unwrap(),
            &want_headers,
            "headers {i}"
        );
        assert_eq!(g["ts"].as_i64(), r.timestamp.to_millis(), "timestamp {i}");
        assert_eq!(
            g["ts_type"].as_i64(),
            Some(0),
            "timestamp type {i} (0 = CreateTime)"
        );
    }
}

#[test]
fn confluent_kafka_admin_lists_topics_and_alters_incrementally() {
    let broker = Broker::start();
    broker.create_topic("py-admin", 4, &[("retention.bytes", "123456789")]);
    broker.create_topic("py-other", 1, &[]);

    let Some(out) = run_python(CONFLUENT_ADMIN, &[&broker.bootstrap()], PY_TIMEOUT) else {
        return;
    };
    let stdout = expect_success("confluent-kafka admin", &out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad admin output ({e}): {stdout}"));
    assert_eq!(v["brokers"].as_i64(), Some(1));
    assert_eq!(v["topics"]["py-admin"].as_i64(), Some(4), "{v}");
    assert_eq!(v["topics"]["py-other"].as_i64(), Some(1), "{v}");
    assert_eq!(v["config"]["retention.ms"].as_str(), Some("7200000"), "{v}");
    assert_eq!(
        v["config"]["retention.bytes"].as_str(),
        Some("123456789"),
        "an incremental alter must keep the other topic configs: {v}"
    );
    assert_eq!(
        v["unknown_key_error"].as_str(),
        Some("INVALID_CONFIG"),
        "an unknown topic config must be refused: {v}"
    );
}

/// DescribeCluster, DescribeLogDirs and OffsetDelete, as admin tools call them.
const CLUSTER_ADMIN: &str = r#"
import json, sys
from kafka import KafkaAdminClient, KafkaProducer, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
addr = sys.argv[1]
p = KafkaProducer(bootstrap_servers=[addr], acks='all')
for i in range(5):
    p.send('py-dirs', value=b'x' * 100, partition=0).get(timeout=30)
c = KafkaConsumer(bootstrap_servers=[addr], group_id='py-offsets', enable_auto_commit=False)
c.assign([TopicPartition('py-dirs', 0)])
c.commit({TopicPartition('py-dirs', 0): OffsetAndMetadata(3, 'note', -1)})
c.close()
a = KafkaAdminClient(bootstrap_servers=[addr])
cluster = a.describe_cluster()
dirs = a.describe_log_dirs()
before = a.list_group_offsets('py-offsets')
deleted_error = None
try:
    result = a.delete_group_offsets('py-offsets', [TopicPartition('py-dirs', 0)])
    errors = [repr(e) for e in (result.values() if isinstance(result, dict) else []) if e and getattr(e, 'errno', 0)]
    deleted_error = errors[0] if errors else None
except Exception as e:
    deleted_error = repr(e)
after = a.list_group_offsets('py-offsets')
def flat(offsets):
    # kafka-python may key the answer by group first.
    if offsets and all(isinstance(k, str) for k in offsets):
        offsets = offsets.get('py-offsets', {})
    return offsets
before, after = flat(before), flat(after)
print(json.dumps({
    'brokers': len(cluster['brokers']),
    'cluster_id': cluster['cluster_id'],
    'dirs': repr(dirs),
    'before': {f'{tp.topic}/{tp.partition}': [o.offset, o.metadata] for tp, o in before.items()},
    'after': {f'{tp.topic}/{tp.partition}': o.offset for tp, o in after.items()},
    'deleted_error': deleted_error,
}))
"#;

#[test]
fn cluster_log_dirs_and_offset_delete() {
    let broker = Broker::start();
    broker.create_topic("py-dirs", 1, &[]);
    let Some(out) = run_python(CLUSTER_ADMIN, &[&broker.bootstrap()], PY_TIMEOUT) else {
        return;
    };
    let stdout = expect_success("cluster admin", &out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad output ({e}): {stdout}"));
    assert_eq!(v["brokers"], 1, "{v}");
    assert!(!v["cluster_id"].as_str().unwrap_or("").is_empty(), "{v}");
    assert!(
        v["dirs"].as_str().unwrap_or("").contains("py-dirs"),
        "log dirs list the topic: {v}"
    );
    assert_eq!(
        v["before"]["py-dirs/0"],
        serde_json::json!([3, "note"]),
        "{v}"
    );
    assert!(v["deleted_error"].is_null(), "{v}");
    let after = &v["after"]["py-dirs/0"];
    assert!(
        after.is_null() || after == -1,
        "the committed offset is gone after OffsetDelete: {v}"
    );
}

/// Asynchronous manual commits after every message (librdkafka sends them
/// back to back on one connection), then the committed offset read back.
const ASYNC_COMMITS: &str = r#"
import json, sys, time
from confluent_kafka import Consumer, TopicPartition
addr, topic, total, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
results = []
for r in range(rounds):
    group = f"async-commits-{r}"
    c = Consumer({'bootstrap.servers': addr, 'group.id': group,
                  'enable.auto.commit': False, 'enable.auto.offset.store': True,
                  'auto.offset.reset': 'earliest'})
    c.subscribe([topic])
    seen, deadline = 0, time.time() + 60
    while seen < total and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen += 1
        c.commit(asynchronous=True)
    c.close()
    check = Consumer({'bootstrap.servers': addr, 'group.id': group})
    committed = check.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    check.close()
    results.append([seen, committed])
print(json.dumps(results))
"#;

#[test]
fn asynchronous_commits_keep_the_last_offset() {
    let broker = Broker::start();
    let topic = "py-async-commits";
    broker.create_topic(topic, 1, &[]);
    let records: Vec<Rec> = (0..300)
        .map(|i| Rec {
            partition: 0,
            offset: -1,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            headers: Vec::new(),
            timestamp: Timestamp::NotAvailable,
        })
        .collect();
    let producer = broker.producer(&[]);
    let reports = produce_all(&producer, topic, &records, Duration::from_secs(60));
    assert_all_acked(&reports, records.len());
    let Some(out) = run_python(
        ASYNC_COMMITS,
        &[&broker.bootstrap(), topic, "300", "3"],
        PY_TIMEOUT,
    ) else {
        return;
    };
    let stdout = expect_success("asynchronous commits", &out);
    let rounds: Vec<(i64, i64)> = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad output ({e}): {stdout}"));
    for (seen, committed) in rounds {
        assert_eq!(seen, 300, "{stdout}");
        assert_eq!(committed, 300, "the last commit wins: {stdout}");
    }
}
