//! The schema registry served by `sluice serve`, and produce-time
//! validation, driven by confluent-kafka's own schema-registry client,
//! Protobuf serializer and deserializer.

use std::time::Duration;

use sluice_tests::{Broker, expect_success, run_python};

const PY_TIMEOUT: Duration = Duration::from_secs(120);

/// Registers a rule-carrying schema over REST, produces valid records with
/// the Protobuf serializer (latest registered version), reads them back with
/// the deserializer, and checks that garbage, an unknown schema id, a schema
/// id of another subject and a rule violation are each refused with
/// INVALID_RECORD and a message naming the problem.
const SERIALIZER_FLOW: &str = r#"
import json, sys, urllib.request
from confluent_kafka import Producer, Consumer, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer, ProtobufDeserializer
from confluent_kafka.serialization import SerializationContext, MessageField
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

addr, registry = sys.argv[1], sys.argv[2]
out = {}

def post(path, body):
    req = urllib.request.Request(registry + path, data=json.dumps(body).encode(),
                                 headers={'Content-Type': 'application/vnd.schemaregistry.v1+json'})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

SCHEMA = '''syntax = "proto3";
package shop;
import "buf/validate/validate.proto";
message Customer {
  string name = 1 [(buf.validate.field).string.min_len = 1];
  string email = 2 [(buf.validate.field).string.email = true];
  int32 age = 3 [(buf.validate.field).int32 = {gte: 0, lte: 150}];
}
'''
# The rules file is built into Sluice's registry; naming it as a reference
# makes it a subject that clients can fetch like any other import.
VALIDATE = {'name': 'buf/validate/validate.proto', 'subject': 'buf/validate/validate.proto', 'version': 1}
out['register'] = post('/subjects/customers-value/versions',
                       {'schema': SCHEMA, 'schemaType': 'PROTOBUF', 'references': [VALIDATE]})
out['other'] = post('/subjects/other-value/versions', {'schema': 'syntax = "proto3"; message Other { string x = 1; }', 'schemaType': 'PROTOBUF'})

# The same message type built at run time (no protoc): wire-compatible, no rules.
fdp = descriptor_pb2.FileDescriptorProto(name='shop/customer.proto', package='shop', syntax='proto3')
m = fdp.message_type.add(name='Customer')
S = descriptor_pb2.FieldDescriptorProto
for name, num, typ in [('name', 1, S.TYPE_STRING), ('email', 2, S.TYPE_STRING), ('age', 3, S.TYPE_INT32)]:
    m.field.add(name=name, number=num, type=typ, label=S.LABEL_OPTIONAL)
pool = descriptor_pool.DescriptorPool()
pool.Add(fdp)
Customer = message_factory.GetMessageClass(pool.FindMessageTypeByName('shop.Customer'))

sr = SchemaRegistryClient({'url': registry})
ser = ProtobufSerializer(Customer, sr, {'auto.register.schemas': False, 'use.latest.version': True,
                                        'use.deprecated.format': False})
ctx = SerializationContext('customers', MessageField.VALUE)

def produce(value):
    p = Producer({'bootstrap.servers': addr, 'acks': 'all', 'message.send.max.retries': 0})
    result = {}
    def cb(err, msg):
        detail = msg.error() if msg is not None and msg.error() is not None else err
        result['error'] = None if err is None else {'name': err.name(), 'str': detail.str()}
        result['offset'] = None if msg is None else msg.offset()
    p.produce('customers', value=value, callback=cb)
    p.flush(30)
    return result

from kafka import KafkaProducer
kp = KafkaProducer(bootstrap_servers=[addr], acks='all', retries=0, request_timeout_ms=30000)
def reason(value):
    # kafka-python surfaces the broker's per-record error text.
    try:
        kp.send('customers', value=value).get(timeout=30)
        return None
    except Exception as e:
        return str(e)

good = [Customer(name='Ada', email='ada@example.com', age=36), Customer(name='Bob', email='bob@example.org', age=7)]
out['good'] = [produce(ser(c, ctx)) for c in good]
framed_bad = ser(Customer(name='Eve', email='not-an-email', age=30), ctx)
bad_age = ser(Customer(name='Old', email='old@example.com', age=200), ctx)
unknown = bytearray(framed_bad); unknown[1:5] = (999).to_bytes(4, 'big')
other_id = out['other'][1].get('id', 0)
foreign = bytearray(ser(good[0], ctx)); foreign[1:5] = int(other_id).to_bytes(4, 'big')
for key, value in [('bad_email', framed_bad), ('bad_age', bad_age), ('garbage', b'\x07garbage'),
                   ('unknown_id', bytes(unknown)), ('other_subject_id', bytes(foreign))]:
    out[key] = produce(value)
    out[key]['reason'] = reason(value)

de = ProtobufDeserializer(Customer, {'use.deprecated.format': False})
c = Consumer({'bootstrap.servers': addr, 'group.id': 'reader', 'enable.auto.commit': False})
c.assign([TopicPartition('customers', 0, 0)])
got = []
while len(got) < 10:
    msg = c.poll(3)
    if msg is None:
        break
    if msg.error():
        continue
    v = de(msg.value(), SerializationContext('customers', MessageField.VALUE))
    got.append({'name': v.name, 'email': v.email, 'age': v.age, 'offset': msg.offset()})
c.close()
out['read'] = got
print(json.dumps(out))
"#;

#[test]
fn confluent_protobuf_serializer_and_validation() {
    let broker = Broker::start();
    broker.create_topic("customers", 1, &[]);
    let registry = format!("http://{}", broker.registry_addr());
    let Some(out) = run_python(
        SERIALIZER_FLOW,
        &[&broker.bootstrap(), &registry],
        PY_TIMEOUT,
    ) else {
        return;
    };
    let stdout = expect_success("confluent-kafka serializer flow", &out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad output ({e}): {stdout}"));
    assert_eq!(v["register"][0], 200, "{v}");
    for (i, g) in v["good"].as_array().unwrap().iter().enumerate() {
        assert!(g["error"].is_null(), "valid record {i} refused: {g}");
        assert_eq!(g["offset"], i as i64, "{g}");
    }
    let refused = |key: &str, needle: &str| {
        let r = &v[key];
        assert_eq!(r["error"]["name"], "INVALID_RECORD", "{key}: {r}");
        let text = r["reason"].as_str().unwrap_or("");
        assert!(
            text.contains(needle),
            "{key}: the error text should mention '{needle}': {text}"
        );
    };
    refused("bad_email", "email");
    refused("bad_age", "age");
    refused("garbage", "wire format");
    refused("unknown_id", "999");
    refused("other_subject_id", "customers-value");
    let read = v["read"].as_array().unwrap();
    assert_eq!(read.len(), 2, "only the two valid records are stored: {v}");
    assert_eq!(read[0]["email"], "ada@example.com");
    assert_eq!(read[1]["name"], "Bob");
    assert_eq!(read[1]["offset"], 1);
}

/// A topic config names a message type: records are raw Protobuf of that
/// type (no framing), checked against the subject's latest version.
#[test]
fn raw_protobuf_topic_is_validated_against_its_message_type() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::BaseRecord;
    use sluice_tests::orders;

    let broker = Broker::start();
    orders::register_order_schema(&broker.registry_addr(), "raw-orders-value")
        .expect("register the order schema");
    broker.create_topic(
        "raw-orders",
        1,
        &[("sluice.value.message.type", "bench.Order")],
    );
    // Idempotent: a refused batch must not wedge the producer's sequence.
    let producer = broker.producer(&[("enable.idempotence", "true"), ("linger.ms", "0")]);
    let send = |value: Vec<u8>| {
        use rdkafka::producer::Producer;
        producer
            .send(
                BaseRecord::<(), [u8], usize>::with_opaque_to("raw-orders", 0).payload(&value[..]),
            )
            .expect("enqueue");
        producer.flush(Duration::from_secs(30)).expect("flush");
        let mut reports = producer.context().take();
        assert_eq!(reports.len(), 1);
        reports.remove(0).error
    };
    let invalid = Some(KafkaError::MessageProduction(
        RDKafkaErrorCode::InvalidRecord,
    ));
    let ok = send(orders::encode_order(1, true));
    assert_eq!(ok, None, "a valid raw order is accepted");
    let bad = send(orders::encode_order(2, false));
    assert_eq!(bad, invalid, "an order with a bad email is refused");
    let framed = send(orders::frame(1, &orders::encode_order(3, true)));
    assert_eq!(framed, invalid, "framed bytes are not a raw order");
    let after = send(orders::encode_order(4, true));
    assert_eq!(after, None, "valid orders after a refused one are accepted");
    assert_eq!(
        broker.watermarks("raw-orders", 0),
        (0, 2),
        "only the valid orders are stored"
    );
}

/// The `string.pattern` rule: a schema whose pattern does not compile is
/// refused at registration with the reason; records are checked against a
/// pattern that does.
#[test]
fn pattern_rule_is_compiled_at_registration_and_enforced() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseRecord, Producer};
    use sluice_tests::orders::http;

    let broker = Broker::start();
    let registry = broker.registry_addr();
    let register = |subject: &str, pattern: &str| {
        let schema = format!(
            "syntax = \"proto3\"; package shop; import \"buf/validate/validate.proto\"; \
             message Sku {{ string code = 1 [(buf.validate.field).string.pattern = \"{pattern}\"]; }}"
        );
        let body = serde_json::json!({
            "schema": schema,
            "schemaType": "PROTOBUF",
            "references": [{"name": "buf/validate/validate.proto",
                            "subject": "buf/validate/validate.proto", "version": 1}],
        })
        .to_string();
        http(
            &registry,
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(&body),
        )
        .expect("registry request")
    };
    let (status, body) = register("broken-value", "^[A-Z");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("42201"), "{body}");
    assert!(body.contains("not a valid RE2 pattern"), "{body}");

    let (status, body) = register("skus-value", "^[A-Z]{3}-\\\\d{4}$");
    assert_eq!(status, 200, "{body}");
    let id: u32 = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap() as u32;
    broker.create_topic("skus", 1, &[]);
    let producer = broker.producer(&[("linger.ms", "0")]);
    let send = |code: &str| {
        // Framing with an empty message-index list (the first message),
        // then field 1 as a string.
        let mut value = vec![0];
        value.extend(id.to_be_bytes());
        value.push(0);
        value.extend([0x0a, code.len() as u8]);
        value.extend(code.as_bytes());
        producer
            .send(BaseRecord::<(), [u8], usize>::with_opaque_to("skus", 0).payload(&value[..]))
            .expect("enqueue");
        producer.flush(Duration::from_secs(30)).expect("flush");
        let mut reports = producer.context().take();
        assert_eq!(reports.len(), 1);
        reports.remove(0).error
    };
    assert_eq!(send("ABC-1234"), None);
    assert_eq!(
        send("ABC-12345"),
        Some(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidRecord
        ))
    );
    // RE2's \d is ASCII: Arabic-Indic digits do not match.
    assert_eq!(
        send("ABC-١٢٣٤"),
        Some(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidRecord
        ))
    );
    assert_eq!(broker.watermarks("skus", 0), (0, 1));
    let log = broker.log();
    assert!(
        log.contains("value does not match regex pattern"),
        "the broker reports the violated pattern"
    );
}
