//! Admin APIs that Kafka admin clients call beyond topics and groups:
//! ElectLeaders, DescribeProducers, ListTransactions and client quotas
//! (DescribeClientQuotas / AlterClientQuotas, with produce and fetch byte
//! rates enforced through `throttle_time_ms`), driven by kafka-python's and
//! confluent-kafka's admin clients and librdkafka producers and consumers.

use std::time::Duration;

use sluice_tests::{Broker, expect_success, run_python};

const PY_TIMEOUT: Duration = Duration::from_secs(180);

fn run(script: &str, args: &[&str]) -> Option<serde_json::Value> {
    let out = run_python(script, args, PY_TIMEOUT)?;
    let stdout = expect_success("python admin script", &out);
    Some(
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("bad script output ({e}): {stdout}")),
    )
}

const ELECT_PRODUCERS_TRANSACTIONS: &str = r#"
import json, sys
from confluent_kafka import Producer, TopicPartition as CTP
from confluent_kafka import ElectionType
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient, TopicPartition
import kafka.errors as Errors
addr = sys.argv[1]
out = {}

# An idempotent producer writes 5 records to partition 0.
p = Producer({'bootstrap.servers': addr, 'enable.idempotence': True})
for i in range(5):
    p.produce('ap', value=b'v%d' % i, partition=0)
assert p.flush(30) == 0

a = KafkaAdminClient(bootstrap_servers=[addr], request_timeout_ms=30000)
states = a.describe_producers([TopicPartition('ap', 0), TopicPartition('ap', 1)])
out['producers'] = {str(tp.partition): [[s.producer_id, s.producer_epoch, s.last_sequence,
                                          s.last_timestamp, s.coordinator_epoch,
                                          s.current_transaction_start_offset]
                                         for s in st.active_producers]
                    for tp, st in states.items()}
try:
    a.describe_producers([TopicPartition('ap', 7)], broker_id=a._manager.cluster.brokers().pop().node_id)
    out['producers_unknown'] = None
except Exception as e:
    out['producers_unknown'] = type(e).__name__

out['transactions'] = {str(k): list(v) for k, v in a.list_transactions().items()}

r = a.elect_leaders(0, {'ap': [0, 1], 'nosuch': [0]}, raise_errors=False)
out['elect'] = sorted([res.topic, pr.partition_id, pr.error_code]
                      for res in r.replica_election_results for pr in res.partition_result)
a.close()

c = AdminClient({'bootstrap.servers': addr})
f = c.elect_leaders(ElectionType.PREFERRED, [CTP('ap', 0)])
res = f.result(timeout=30)
out['elect_confluent'] = {'%s-%d' % (tp.topic, tp.partition):
                          (None if e is None else e.name()) for tp, e in res.items()}
print(json.dumps(out))
"#;

#[test]
fn elect_leaders_describe_producers_and_list_transactions() {
    let broker = Broker::start();
    broker.create_topic("ap", 2, &[]);
    let before = sluice_tests::now_ms();
    let Some(v) = run(ELECT_PRODUCERS_TRANSACTIONS, &[&broker.bootstrap()]) else {
        return;
    };
    let producers = &v["producers"];
    let p0 = producers["0"].as_array().expect("partition 0 described");
    assert_eq!(p0.len(), 1, "one idempotent producer on partition 0: {v}");
    let s = p0[0].as_array().unwrap();
    assert!(s[0].as_i64().unwrap() >= 0, "producer id: {v}");
    assert_eq!(s[1].as_i64(), Some(0), "epoch: {v}");
    assert_eq!(s[2].as_i64(), Some(4), "last sequence: {v}");
    assert!(
        s[3].as_i64().unwrap() >= before - 5_000,
        "last timestamp: {v}"
    );
    assert_eq!(s[4].as_i64(), Some(-1), "coordinator epoch: {v}");
    assert_eq!(s[5].as_i64(), Some(-1), "no open transaction: {v}");
    assert_eq!(producers["1"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["producers_unknown"].as_str(),
        Some("UnknownTopicOrPartitionError"),
        "{v}"
    );

    let txns = v["transactions"].as_object().unwrap();
    assert_eq!(txns.len(), 1, "one broker answered: {v}");
    assert!(
        txns.values()
            .all(|l| l.as_array().is_some_and(Vec::is_empty)),
        "{v}"
    );

    // 84 = ELECTION_NOT_NEEDED, 3 = UNKNOWN_TOPIC_OR_PARTITION.
    assert_eq!(
        v["elect"],
        serde_json::json!([["ap", 0, 84], ["ap", 1, 84], ["nosuch", 0, 3]]),
        "{v}"
    );
    assert_eq!(
        v["elect_confluent"],
        serde_json::json!({"ap-0": "ELECTION_NOT_NEEDED"}),
        "{v}"
    );
}

/// Raw DescribeClientQuotas / AlterClientQuotas through kafka-python's
/// protocol classes (its admin client has no quota methods).
const QUOTA_HELPERS: &str = r#"
import json, sys, time
from kafka import KafkaAdminClient
from kafka.protocol.admin.client_quotas import (AlterClientQuotasRequest,
                                                DescribeClientQuotasRequest)
addr = sys.argv[1]
a = KafkaAdminClient(bootstrap_servers=[addr], request_timeout_ms=30000)

def send(req):
    async def go():
        return await a._manager.send(req)
    return a._manager.run(go)

E = AlterClientQuotasRequest.EntryData
def alter(entries, validate_only=False):
    req = AlterClientQuotasRequest(entries=[
        E(entity=[E.EntityData(entity_type=t, entity_name=n) for t, n in ent],
          ops=[E.OpData(key=k, value=float(0 if v is None else v), remove=v is None)
               for k, v in ops])
        for ent, ops in entries], validate_only=validate_only)
    return [[e.error_code, e.error_message or None] for e in send(req).entries]

C = DescribeClientQuotasRequest.ComponentData
EXACT, DEFAULT, ANY = 0, 1, 2
def describe(components, strict=False):
    req = DescribeClientQuotasRequest(components=[
        C(entity_type=t, match_type=m, match=n) for t, m, n in components], strict=strict)
    r = send(req)
    if r.error_code:
        return ['error', r.error_code, r.error_message]
    entries = [[sorted(([e.entity_type, e.entity_name] for e in entry.entity),
                       key=lambda x: x[0]),
                {v.key: v.value for v in entry.values}] for entry in r.entries]
    return sorted(entries, key=json.dumps)
"#;

const QUOTAS_ALTER_DESCRIBE: &str = r#"
out = {}
out['validate_only'] = alter([([('user', 'alice')], [('producer_byte_rate', 1000)])], validate_only=True)
out['after_validate_only'] = describe([])
out['alter'] = alter([
    ([('user', 'alice')], [('producer_byte_rate', 1024), ('consumer_byte_rate', 2048)]),
    ([('user', 'alice'), ('client-id', 'app')], [('request_percentage', 12.5)]),
    ([('user', None)], [('producer_byte_rate', 4096)]),
    ([('client-id', None)], [('consumer_byte_rate', 8192)]),
    ([('client-id', 'slowpoke')], [('producer_byte_rate', 50000)]),
    ([('client-id', 'slowreader')], [('consumer_byte_rate', 100000)]),
])
out['bad'] = alter([
    ([('user', 'bob')], [('bytes_per_day', 5)]),
    ([('group', 'g')], [('producer_byte_rate', 5)]),
    ([('user', 'bob')], [('producer_byte_rate', -5)]),
    ([('user', 'bob')], [('producer_byte_rate', 1.5)]),
])
out['all'] = describe([])
out['exact_alice'] = describe([('user', EXACT, 'alice')])
out['exact_alice_strict'] = describe([('user', EXACT, 'alice')], strict=True)
out['default_user'] = describe([('user', DEFAULT, None)])
out['any_client_strict'] = describe([('client-id', ANY, None)], strict=True)
out['bad_filter'] = describe([('user', 7, None)])
out['remove'] = alter([([('user', 'alice')], [('consumer_byte_rate', None)])])
out['after_remove'] = describe([('user', EXACT, 'alice')], strict=True)
# The defaults would apply to every client of the enforcement check
# (user quotas come before client-id ones); drop them.
out['remove_defaults'] = alter([([('user', None)], [('producer_byte_rate', None)]),
                                ([('client-id', None)], [('consumer_byte_rate', None)])])
a.close()
print(json.dumps(out))
"#;

const QUOTAS_DESCRIBE_ONLY: &str = r#"
print(json.dumps(describe([('client-id', EXACT, 'slowpoke')])))
a.close()
"#;

const QUOTAS_ENFORCED: &str = r#"
import json, sys, time
from confluent_kafka import Producer, Consumer, TopicPartition
addr = sys.argv[1]
out = {}

def produce(client_id, n):
    throttles = []
    p = Producer({'bootstrap.servers': addr, 'client.id': client_id, 'linger.ms': 20,
                  'throttle_cb': lambda ev: throttles.append(ev.throttle_time)})
    start = time.time()
    for i in range(n):
        p.produce('quota-t', value=(b'%06d' % i) + b'x' * 9994, partition=0)
    assert p.flush(60) == 0
    # One more record after the throttled answer.
    p.produce('quota-t', value=b'last', partition=0)
    assert p.flush(60) == 0
    p.poll(0)
    return {'throttles': throttles, 'seconds': time.time() - start}

out['fast'] = produce('fastpoke', 60)
out['slow'] = produce('slowpoke', 60)

def consume(client_id, want):
    throttles = []
    c = Consumer({'bootstrap.servers': addr, 'group.id': 'quota-readers-' + client_id,
                  'client.id': client_id, 'enable.auto.commit': False,
                  'auto.offset.reset': 'earliest',
                  'throttle_cb': lambda ev: throttles.append(ev.throttle_time)})
    c.assign([TopicPartition('quota-t', 0, 0)])
    got = 0
    deadline = time.time() + 90
    while got < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    c.close()
    return {'records': got, 'throttles': throttles}

out['reader'] = consume('slowreader', 122)
print(json.dumps(out))
"#;

#[test]
fn client_quotas_are_stored_described_and_enforced() {
    let mut broker = Broker::start();
    broker.create_topic("quota-t", 1, &[]);
    let script = format!("{QUOTA_HELPERS}{QUOTAS_ALTER_DESCRIBE}");
    let Some(v) = run(&script, &[&broker.bootstrap()]) else {
        return;
    };
    assert_eq!(v["validate_only"], serde_json::json!([[0, null]]), "{v}");
    assert_eq!(v["after_validate_only"], serde_json::json!([]), "{v}");
    assert!(
        v["alter"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e[0].as_i64() == Some(0)),
        "{v}"
    );
    // 42 = INVALID_REQUEST.
    for e in v["bad"].as_array().unwrap() {
        assert_eq!(e[0].as_i64(), Some(42), "{v}");
        assert!(e[1].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let alice = serde_json::json!([["user", "alice"]]);
    let alice_app = serde_json::json!([["client-id", "app"], ["user", "alice"]]);
    assert_eq!(v["all"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(
        v["exact_alice"],
        serde_json::json!([
            [alice_app, {"request_percentage": 12.5}],
            [alice, {"consumer_byte_rate": 2048.0, "producer_byte_rate": 1024.0}],
        ]),
        "{v}"
    );
    assert_eq!(
        v["exact_alice_strict"],
        serde_json::json!([[alice, {"consumer_byte_rate": 2048.0, "producer_byte_rate": 1024.0}]]),
        "{v}"
    );
    assert_eq!(
        v["default_user"],
        serde_json::json!([[[["user", null]], {"producer_byte_rate": 4096.0}]]),
        "{v}"
    );
    assert_eq!(
        v["any_client_strict"],
        serde_json::json!([
            [[["client-id", "slowpoke"]], {"producer_byte_rate": 50000.0}],
            [[["client-id", "slowreader"]], {"consumer_byte_rate": 100000.0}],
            [[["client-id", null]], {"consumer_byte_rate": 8192.0}],
        ]),
        "{v}"
    );
    assert_eq!(v["bad_filter"][1].as_i64(), Some(42), "{v}");
    assert_eq!(v["remove"], serde_json::json!([[0, null]]), "{v}");
    assert_eq!(
        v["remove_defaults"],
        serde_json::json!([[0, null], [0, null]]),
        "{v}"
    );
    assert_eq!(
        v["after_remove"],
        serde_json::json!([[alice, {"producer_byte_rate": 1024.0}]]),
        "{v}"
    );

    // Quotas live in the metadata store.
    broker.restart();
    let script = format!("{QUOTA_HELPERS}{QUOTAS_DESCRIBE_ONLY}");
    let v = run(&script, &[&broker.bootstrap()]).unwrap();
    assert_eq!(
        v,
        serde_json::json!([[[["client-id", "slowpoke"]], {"producer_byte_rate": 50000.0}]]),
        "after a restart"
    );

    let v = run(QUOTAS_ENFORCED, &[&broker.bootstrap()]).unwrap();
    let max = |x: &serde_json::Value| {
        x.as_array()
            .unwrap()
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .fold(0.0, f64::max)
    };
    assert_eq!(
        max(&v["fast"]["throttles"]),
        0.0,
        "a client without a produce quota was throttled: {v}"
    );
    // 600 kB in well under a second against 50 kB/s over a 10 s window:
    // about (60 - 50) / 50 * 10 s = 2 s.
    let slow = max(&v["slow"]["throttles"]);
    assert!(
        (1.0..=11.0).contains(&slow),
        "the producer over its quota was not throttled as Kafka would: {v}"
    );
    assert!(
        v["slow"]["seconds"].as_f64().unwrap() >= slow * 0.8,
        "the throttled producer was not held back: {v}"
    );
    assert_eq!(v["reader"]["records"].as_i64(), Some(122), "{v}");
    assert!(
        max(&v["reader"]["throttles"]) > 0.0,
        "the consumer over its quota was never throttled: {v}"
    );
}
