//! Field policies by consumer purpose: a schema marks an email billing-only
//! and a name and a street as PII; consumers declare their purpose in
//! `client.id` and read records with confluent-kafka's own Protobuf
//! deserializer; SQL by purpose shows the same; a purpose the principal is
//! not granted is refused.

use std::time::Duration;

use rdkafka::Message as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use sluice_tests::{Broker, expect_success, run_python};

use crate::lakehouse::{sluice_cli, wait_for_table_rows};

/// Runs `sluice ARGS`, which must fail; returns its standard error.
fn sluice_fails(args: &[&str]) -> String {
    let out = sluice_tests::run_with_timeout(
        std::process::Command::new(sluice_tests::sluice_bin().unwrap()).args(args),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(!out.status.success(), "sluice {} succeeded", args.join(" "));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SCHEMA: &str = r#"syntax = "proto3";
package crm;
import "sluice/policy/v1/policy.proto";
message Customer {
  string id = 1;
  string email = 2 [(sluice.policy.v1.field) = { purposes: ["billing"] }];
  string name = 3 [(sluice.policy.v1.field) = { sensitivity: "pii" }];
  Address address = 4;
}
message Address {
  string city = 1;
  string street = 2 [(sluice.policy.v1.field) = { sensitivity: "pii" }];
}
"#;

/// Purposes and grants: PII is for billing; analytics gets hashes.
fn policy_file(granted_to_anonymous: &[&str]) -> String {
    let grants: Vec<String> = granted_to_anonymous
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect();
    format!(
        r#"purposes = ["billing", "marketing", "analytics"]
action = "drop"
[actions]
analytics = "hash"
[sensitivity]
pii = ["billing"]
[grants]
"User:ANONYMOUS" = [{}]
"#,
        grants.join(", ")
    )
}

/// Registers the schema, produces five customers with the Protobuf
/// serializer, and reads them back as four consumers (billing, marketing,
/// analytics, and one declaring no purpose) with the deserializer.
const FLOW: &str = r#"
import json, sys, time, hashlib, urllib.request
from confluent_kafka import Producer, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer, ProtobufDeserializer
from confluent_kafka.serialization import SerializationContext, MessageField
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

addr, registry, topic, schema = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
POLICY = {'name': 'sluice/policy/v1/policy.proto', 'subject': 'sluice/policy/v1/policy.proto', 'version': 1}
req = urllib.request.Request(registry + f'/subjects/{topic}-value/versions',
    data=json.dumps({'schema': schema, 'schemaType': 'PROTOBUF', 'references': [POLICY]}).encode(),
    headers={'Content-Type': 'application/vnd.schemaregistry.v1+json'})
with urllib.request.urlopen(req) as r:
    assert r.status == 200, r.status

# The same messages built at run time (no protoc): wire-compatible, no options.
fdp = descriptor_pb2.FileDescriptorProto(name='crm/customer.proto', package='crm', syntax='proto3')
S = descriptor_pb2.FieldDescriptorProto
# In the registered file's order: the serializer frames records with the
# message's index in its own file.
cust = fdp.message_type.add(name='Customer')
for name, num in [('id', 1), ('email', 2), ('name', 3)]:
    cust.field.add(name=name, number=num, type=S.TYPE_STRING, label=S.LABEL_OPTIONAL)
cust.field.add(name='address', number=4, type=S.TYPE_MESSAGE, type_name='.crm.Address', label=S.LABEL_OPTIONAL)
addr_m = fdp.message_type.add(name='Address')
for name, num in [('city', 1), ('street', 2)]:
    addr_m.field.add(name=name, number=num, type=S.TYPE_STRING, label=S.LABEL_OPTIONAL)
pool = descriptor_pool.DescriptorPool()
pool.Add(fdp)
Customer = message_factory.GetMessageClass(pool.FindMessageTypeByName('crm.Customer'))
Address = message_factory.GetMessageClass(pool.FindMessageTypeByName('crm.Address'))

sr = SchemaRegistryClient({'url': registry})
ser = ProtobufSerializer(Customer, sr, {'auto.register.schemas': False, 'use.latest.version': True,
                                        'use.deprecated.format': False})
ctx = SerializationContext(topic, MessageField.VALUE)
p = Producer({'bootstrap.servers': addr, 'acks': 'all'})
failed = []
for i in range(5):
    c = Customer(id=f'c{i}', email=f'c{i}@example.com', name=f'Name {i}', address=Address(city='Paris', street=f'{i} rue X'))
    p.produce(topic, key=f'k{i}', value=ser(c, ctx), callback=lambda err, msg: err and failed.append(str(err)))
p.flush(30)
assert not failed, failed

de = ProtobufDeserializer(Customer, {'use.deprecated.format': False})
def read(client_id):
    c = Consumer({'bootstrap.servers': addr, 'group.id': 'g-' + client_id, 'client.id': client_id,
                  'enable.auto.commit': False})
    c.assign([TopicPartition(topic, 0, 0)])
    got, errors = [], []
    deadline = time.time() + 30
    while len(got) < 5 and time.time() < deadline:
        msg = c.poll(1)
        if msg is None:
            continue
        if msg.error():
            errors.append(msg.error().name())
            continue
        v = de(msg.value(), SerializationContext(topic, MessageField.VALUE))
        got.append({'id': v.id, 'email': v.email, 'name': v.name, 'city': v.address.city,
                    'street': v.address.street, 'key': msg.key().decode(), 'offset': msg.offset()})
    c.close()
    return {'got': got, 'errors': errors}

out = {name: read(cid) for name, cid in [('billing', 'crm-sync,purpose=billing'),
                                        ('marketing', 'mailer,purpose=marketing'),
                                        ('analytics', 'bi,purpose=analytics'),
                                        ('none', 'plain-reader')]}
out['sha_email0'] = hashlib.sha256(b'c0@example.com').hexdigest()
print(json.dumps(out))
"#;

#[test]
fn consumers_read_what_their_purpose_allows() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_file(&["billing", "marketing", "analytics"])).unwrap();
    let mut broker = Broker::start_with(&[
        "--policy-file",
        policy.to_str().unwrap(),
        "--table-commit-interval-ms",
        "200",
    ]);
    let topic = "customers";
    broker.create_topic(topic, 1, &[]);
    let registry = format!("http://{}", broker.registry_addr());
    let Some(out) = run_python(
        FLOW,
        &[&broker.bootstrap(), &registry, topic, SCHEMA],
        Duration::from_secs(180),
    ) else {
        return;
    };
    let stdout = expect_success("produce and read by purpose", &out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad output ({e}): {stdout}"));
    let rows = |who: &str| -> Vec<serde_json::Value> {
        let r = &v[who];
        assert_eq!(r["errors"], serde_json::json!([]), "{who}: {r}");
        let got = r["got"].as_array().unwrap().clone();
        assert_eq!(got.len(), 5, "{who} reads every record: {r}");
        for (i, row) in got.iter().enumerate() {
            assert_eq!(row["offset"], i as i64, "{who}: {row}");
            assert_eq!(row["id"], format!("c{i}"), "{who}: {row}");
            assert_eq!(row["key"], format!("k{i}"), "{who}: {row}");
            assert_eq!(row["city"], "Paris", "{who}: {row}");
        }
        got
    };
    for (i, row) in rows("billing").iter().enumerate() {
        assert_eq!(row["email"], format!("c{i}@example.com"), "{row}");
        assert_eq!(row["name"], format!("Name {i}"), "{row}");
        assert_eq!(row["street"], format!("{i} rue X"), "{row}");
    }
    for who in ["marketing", "none"] {
        for row in rows(who) {
            assert_eq!(row["email"], "", "{who} must not see the email: {row}");
            assert_eq!(row["name"], "", "{who} must not see the name: {row}");
            assert_eq!(row["street"], "", "{who} must not see the street: {row}");
        }
    }
    let analytics = rows("analytics");
    assert_eq!(analytics[0]["email"], v["sha_email0"], "{}", analytics[0]);
    for row in &analytics {
        for field in ["email", "name", "street"] {
            let text = row[field].as_str().unwrap();
            assert_eq!(text.len(), 64, "{field} is a SHA-256 in hex: {row}");
            assert!(!text.contains("example") && !text.contains("Name"), "{row}");
        }
    }

    // SQL by purpose shows the same fields.
    wait_for_table_rows(&broker, "customers", 5);
    let http = broker.http_addr();
    let sql = |purpose: Option<&str>, statement: &str| {
        let mut args = vec!["sql", statement, "--http", &http];
        if let Some(p) = purpose {
            args.extend(["--purpose", p]);
        }
        sluice_cli(&args)
    };
    let all = "SELECT value FROM customers ORDER BY kafka_offset";
    let billing = sql(Some("billing"), all);
    assert!(
        billing.contains("c0@example.com")
            && billing.contains("Name 0")
            && billing.contains("0 rue X"),
        "{billing}"
    );
    for purpose in [Some("marketing"), None] {
        let seen = sql(purpose, all);
        assert!(seen.contains("c4") && seen.contains("Paris"), "{seen}");
        for secret in ["example.com", "Name ", "rue X"] {
            assert!(!seen.contains(secret), "{purpose:?} sees {secret}: {seen}");
        }
        // The raw value column is not there to read around the policy.
        let args = [
            vec!["sql", "SELECT kafka_value FROM customers", "--http", &http],
            purpose.map(|p| vec!["--purpose", p]).unwrap_or_default(),
        ]
        .concat();
        let why = sluice_fails(&args);
        assert!(why.contains("kafka_value"), "{purpose:?}: {why}");
    }
    let hashed = sql(
        Some("analytics"),
        "SELECT value['email'] AS email FROM customers WHERE kafka_offset = 0",
    );
    let email = hashed.lines().nth(1).unwrap_or("").trim();
    assert_eq!(
        email,
        analytics[0]["email"].as_str().unwrap(),
        "SQL and Kafka hash alike: {hashed}"
    );
    let billing_count = sql(
        Some("billing"),
        "SELECT count(DISTINCT value['email']) AS n FROM customers",
    );
    assert_eq!(
        billing_count.lines().nth(1).map(str::trim),
        Some("5"),
        "{billing_count}"
    );

    // Version 2 retires the email (`reserved 2`). Its column stays in the
    // table with the values of version 1, and stays hidden from the
    // purposes version 1 hid it from.
    let v2 = SCHEMA.replace(
        r#"string email = 2 [(sluice.policy.v1.field) = { purposes: ["billing"] }];"#,
        "reserved 2;",
    );
    assert_ne!(v2, SCHEMA);
    let body = serde_json::json!({
        "schema": v2,
        "schemaType": "PROTOBUF",
        "references": [{"name": "sluice/policy/v1/policy.proto",
                        "subject": "sluice/policy/v1/policy.proto", "version": 1}],
    })
    .to_string();
    let (status, text) = sluice_tests::orders::http(
        &broker.registry_addr(),
        "POST",
        &format!("/subjects/{topic}-value/versions"),
        Some(&body),
    )
    .expect("registry request");
    assert_eq!(status, 200, "register version 2: {text}");
    for purpose in [Some("marketing"), None] {
        let seen = sql(purpose, all);
        assert!(seen.contains("c4"), "{seen}");
        assert!(
            !seen.contains("example.com"),
            "{purpose:?} sees the retired email: {seen}"
        );
    }
    let billing = sql(Some("billing"), all);
    assert!(billing.contains("c0@example.com"), "{billing}");

    // A purpose nobody configured is refused, over SQL too.
    let unknown = sluice_fails(&["sql", all, "--http", &http, "--purpose", "sales"]);
    assert!(unknown.contains("unknown"), "{unknown}");

    // The same principal, no longer granted billing, is refused it.
    std::fs::write(&policy, policy_file(&["marketing"])).unwrap();
    broker.restart();
    let consumer = broker.consumer(&[
        ("client.id", "crm-sync,purpose=billing"),
        ("group.id", "refused"),
    ]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut refused = false;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::TopicAuthorizationFailed,
            ))) => {
                refused = true;
                break;
            }
            Some(Ok(m)) => panic!("a refused purpose read offset {}", m.offset()),
            _ => {}
        }
    }
    assert!(refused, "the billing consumer was not refused");
    assert!(
        broker.log().contains("not granted purpose 'billing'"),
        "{}",
        broker.log_tail(20)
    );
    let denied = sluice_fails(&["sql", all, "--http", &http, "--purpose", "billing"]);
    assert!(denied.contains("not granted"), "{denied}");
}

/// Registers [`SCHEMA`] (with the policy options it imports) for `topic`'s
/// values at `registry`; returns its id and the compiled schema.
fn register_customer_schema(registry: &str, topic: &str) -> (u32, sluice_proto::CompiledSchema) {
    let body = serde_json::json!({
        "schema": SCHEMA, "schemaType": "PROTOBUF",
        "references": [{"name": "sluice/policy/v1/policy.proto",
                        "subject": "sluice/policy/v1/policy.proto", "version": 1}],
    })
    .to_string();
    let (status, text) = sluice_tests::orders::http(
        registry,
        "POST",
        &format!("/subjects/{topic}-value/versions"),
        Some(&body),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let id: u32 = serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"]
        .as_u64()
        .unwrap() as u32;
    let mut refs = std::collections::BTreeMap::new();
    refs.insert(
        "sluice/policy/v1/policy.proto".to_owned(),
        sluice_proto::embedded_source("sluice/policy/v1/policy.proto")
            .unwrap()
            .to_owned(),
    );
    (
        id,
        sluice_proto::CompiledSchema::compile(SCHEMA, &refs).unwrap(),
    )
}

/// Encodes customer `n` in the Confluent framing with schema `id`.
fn customer(schema: &sluice_proto::CompiledSchema, id: u32, n: usize) -> Vec<u8> {
    use prost::Message as _;
    use sluice_proto::prost_reflect::{DynamicMessage, Value};
    let message =
        |name: &str| DynamicMessage::new(schema.pool().get_message_by_name(name).unwrap());
    let mut address = message("crm.Address");
    address.set_field_by_name("city", Value::String("Paris".into()));
    address.set_field_by_name("street", Value::String(format!("{n} rue X")));
    let mut c = message("crm.Customer");
    c.set_field_by_name("id", Value::String(format!("c{n}")));
    c.set_field_by_name("email", Value::String(format!("c{n}@example.com")));
    c.set_field_by_name("name", Value::String(format!("Name {n}")));
    c.set_field_by_name("address", Value::Message(address));
    sluice_proto::encode_frame(id, &[0], &c.encode_to_vec())
}

/// The gateway applies its own policy file, with the broker's code, in
/// front of a cluster that knows nothing of the schema: here a Sluice broker
/// without the subject, with the schema in a separate registry (a second
/// Sluice process), as a gateway before an existing Kafka cluster would be.
#[test]
fn gateway_redacts_by_purpose() {
    use rdkafka::producer::{BaseRecord, Producer as _};
    use sluice_proto::prost_reflect::DynamicMessage;

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_file(&["marketing"])).unwrap();
    // The upstream checks the purpose's grant as any Sluice broker does
    // (the gateway passes the declared purpose on), but has no schema for
    // the topic, so redacting is left to the gateway.
    let broker = Broker::start_with(&["--policy-file", policy.to_str().unwrap()]);
    let registry_server = Broker::start();
    let registry = registry_server.registry_addr();
    let gateway = sluice_tests::Gateway::try_start(
        &broker.bootstrap(),
        &format!("http://{registry}"),
        &["--policy-file", policy.to_str().unwrap()],
    )
    .expect("start the gateway");
    let topic = "gw-customers";
    broker.create_topic(topic, 1, &[]);
    let (id, schema) = register_customer_schema(&registry, topic);

    let producer = gateway.producer(&[]);
    for n in 0..10 {
        let value = customer(&schema, id, n);
        producer
            .send(BaseRecord::<(), [u8], usize>::with_opaque_to(topic, n).payload(&value[..]))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(producer.context().failed(), 0);

    let read = |client_id: &str| -> Result<Vec<DynamicMessage>, KafkaError> {
        let consumer = gateway.consumer(&[("client.id", client_id), ("group.id", client_id)]);
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while got.len() < 10 && std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let frame = sluice_proto::decode_frame(m.payload().unwrap()).unwrap();
                    assert_eq!(frame.schema_id, id, "the framing is kept");
                    let desc = schema.record_type().unwrap();
                    got.push(DynamicMessage::decode(desc, frame.payload).unwrap());
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok(got)
    };
    let text =
        |m: &DynamicMessage, f: &str| m.get_field_by_name(f).unwrap().as_str().unwrap().to_owned();
    let marketing = read("mailer,purpose=marketing").expect("marketing is granted");
    assert_eq!(marketing.len(), 10);
    for (n, m) in marketing.iter().enumerate() {
        assert_eq!(text(m, "id"), format!("c{n}"));
        assert_eq!(text(m, "email"), "");
        assert_eq!(text(m, "name"), "");
    }
    // Straight from the upstream, which has no schema for the topic, the
    // records are whole: the gateway removed the fields.
    let whole = broker
        .read_partitions(
            topic,
            &[(0, rdkafka::Offset::Beginning)],
            Duration::from_secs(30),
        )
        .unwrap()
        .remove(&0)
        .unwrap_or_default();
    assert_eq!(whole.len(), 10);
    assert!(whole.iter().all(|r| {
        let v = r.value.as_deref().unwrap_or_default();
        String::from_utf8_lossy(v).contains("@example.com")
    }));
    match read("crm,purpose=billing") {
        Err(KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed)) => {}
        other => panic!(
            "billing through the gateway was not refused: {:?}",
            other.map(|v| v.len())
        ),
    }
    assert!(
        gateway.log().contains("not granted purpose 'billing'"),
        "{}",
        gateway.log()
    );
}

/// In front of a Sluice broker with field policies, a purpose sees through
/// the gateway what it sees directly: the gateway passes the declared
/// purpose on, so the broker does not redact for a reader declaring none.
#[test]
fn gateway_before_a_sluice_broker_keeps_what_the_purpose_may_see() {
    use rdkafka::producer::{BaseRecord, Producer as _};
    use sluice_proto::prost_reflect::DynamicMessage;

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_file(&["billing", "marketing"])).unwrap();
    let broker = Broker::start_with(&["--policy-file", policy.to_str().unwrap()]);
    let registry = broker.registry_addr();
    let gateway = sluice_tests::Gateway::try_start(
        &broker.bootstrap(),
        &format!("http://{registry}"),
        &["--policy-file", policy.to_str().unwrap()],
    )
    .expect("start the gateway");
    let topic = "gw-sluice-customers";
    broker.create_topic(topic, 1, &[]);
    let (id, schema) = register_customer_schema(&registry, topic);
    let producer = broker.producer(&[]);
    for n in 0..5 {
        let value = customer(&schema, id, n);
        producer
            .send(BaseRecord::<(), [u8], usize>::with_opaque_to(topic, n).payload(&value[..]))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(producer.context().failed(), 0);

    let read = |config: rdkafka::ClientConfig, client_id: &str| -> Vec<(String, String)> {
        let consumer = sluice_tests::consumer_from(config, client_id, &[("client.id", client_id)]);
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while got.len() < 5 && std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let frame = sluice_proto::decode_frame(m.payload().unwrap()).unwrap();
                    let desc = schema.record_type().unwrap();
                    let c = DynamicMessage::decode(desc, frame.payload).unwrap();
                    let text =
                        |f: &str| c.get_field_by_name(f).unwrap().as_str().unwrap().to_owned();
                    got.push((text("email"), text("name")));
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => panic!("{client_id}: {e}"),
                None => {}
            }
        }
        got
    };
    for client_id in [
        "crm-sync,purpose=billing",
        "mailer,purpose=marketing",
        "plain",
    ] {
        let direct = read(broker.client_config(), client_id);
        let through = read(gateway.client_config(), client_id);
        assert_eq!(direct.len(), 5, "{client_id}");
        assert_eq!(through, direct, "{client_id} through the gateway");
    }
    let billing = read(gateway.client_config(), "crm-sync,purpose=billing");
    let expected: Vec<(String, String)> = (0..5)
        .map(|n| (format!("c{n}@example.com"), format!("Name {n}")))
        .collect();
    assert_eq!(billing, expected, "billing reads the email and the name");
    let plain = read(gateway.client_config(), "plain");
    assert!(plain.iter().all(|(email, _)| email.is_empty()), "{plain:?}");
}
