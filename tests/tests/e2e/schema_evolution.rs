//! Schema evolution as producers live it: confluent-kafka's
//! ProtobufSerializer registers each new version (the registry's default
//! BACKWARD compatibility), and every engine reads every version's rows.

use std::time::Duration;

use sluice_tests::{Broker, expect_success, run_python};

use crate::lakehouse::{sluice_cli, table_rows, wait_for_table_rows};

const TOPIC: &str = "evolving.orders";
const TABLE: &str = "evolving_orders";

/// Produces ten `Order`s of one of three versions (argument 4): v1
/// `order_id, amount`; v2 adds `coupon`; v3 retires `amount` (`reserved
/// 2`). Prints the values as produced (hex) for the byte-for-byte check.
const PRODUCE: &str = r#"
import json, sys
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import SerializationContext, MessageField

addr, registry, topic, only = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
T = descriptor_pb2.FieldDescriptorProto
def order_class(version, fields, reserved=()):
    f = descriptor_pb2.FileDescriptorProto(name=f"shop/orders.proto", package="shop", syntax="proto3")
    m = f.message_type.add(name="Order")
    for name, number, ftype in fields:
        m.field.add(name=name, number=number, type=ftype, label=T.LABEL_OPTIONAL)
    for r in reserved:
        m.reserved_range.add(start=r, end=r + 1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
V1 = order_class(1, [("order_id", 1, T.TYPE_STRING), ("amount", 2, T.TYPE_INT64)])
V2 = order_class(2, [("order_id", 1, T.TYPE_STRING), ("amount", 2, T.TYPE_INT64), ("coupon", 3, T.TYPE_STRING)])
V3 = order_class(3, [("order_id", 1, T.TYPE_STRING), ("coupon", 3, T.TYPE_STRING)], reserved=[2])

sr = SchemaRegistryClient({"url": registry})
ctx = SerializationContext(topic, MessageField.VALUE)
p = Producer({"bootstrap.servers": addr, "acks": "all"})
failed, produced = [], []
for version, cls in ((1, V1), (2, V2), (3, V3)):
    if version != only:
        continue
    ser = ProtobufSerializer(cls, sr, {"use.deprecated.format": False})
    for n in range(10 * (version - 1), 10 * version):
        fields = {"order_id": f"o-{n}"}
        if version < 3:
            fields["amount"] = 100 + n
        if version > 1:
            fields["coupon"] = f"c-{n}"
        value = ser(cls(**fields), ctx)
        produced.append(value.hex())
        p.produce(topic, value=value, callback=lambda err, msg: err and failed.append(str(err)))
    p.flush(30)
assert not failed, failed
versions = sr.get_versions(f"{topic}-value")
assert len(versions) == only, versions
print(json.dumps(produced))
"#;

/// Reads the table with PyIceberg and DuckDB, and the topic with a
/// consumer; compares with what was produced.
const READ: &str = r#"
import json, os, sys
from confluent_kafka import Consumer, TopicPartition
from pyiceberg.catalog.rest import RestCatalog
addr, rest_uri, table_name, topic, produced = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
t = RestCatalog("sluice", uri=rest_uri).load_table(table_name)
rows = sorted(t.scan().to_arrow().to_pylist(), key=lambda r: r["kafka_offset"])
assert len(rows) == 30, len(rows)
assert [f.name for f in t.schema().find_field("value").field_type.fields] == ["order_id", "coupon", "amount"], t.schema()
for n, r in enumerate(rows):
    v = r["value"]
    assert v["order_id"] == f"o-{n}", (n, v)
    # The retired amount is still there for the rows that had one.
    assert v["amount"] == (100 + n if n < 20 else None), (n, v)
    assert v["coupon"] == (None if n < 10 else f"c-{n}"), (n, v)

import duckdb, duckdb_extension_avro, duckdb_extension_iceberg
con = duckdb.connect()
for mod, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
    path = os.path.join(os.path.dirname(mod.__file__), "extensions", "v" + duckdb.__version__, name + ".duckdb_extension")
    con.load_extension(path)
got = con.execute("SELECT value.order_id, value.amount, value.coupon FROM iceberg_scan(?) ORDER BY kafka_offset",
                  [t.metadata_location.removeprefix("file://")]).fetchall()
assert got == [(f"o-{n}", 100 + n if n < 20 else None, None if n < 10 else f"c-{n}") for n in range(30)], got

# Kafka consumers get every record back as it was produced, whatever the
# table did with the schema.
c = Consumer({"bootstrap.servers": addr, "group.id": "evolution-reader", "enable.auto.commit": False})
c.assign([TopicPartition(topic, 0, 0)])
values = []
while len(values) < 30:
    m = c.poll(10)
    assert m is not None, f"only {len(values)} records"
    assert not m.error(), m.error()
    values.append(m.value().hex())
c.close()
assert values == produced
print("ok")
"#;

#[test]
fn every_engine_reads_every_version() {
    let broker = Broker::start_with(&["--table-commit-interval-ms", "200"]);
    broker.create_topic(TOPIC, 1, &[]);
    let mut produced: Vec<String> = Vec::new();
    for version in 1..=3 {
        let Some(values) = produce_version(&broker, version) else {
            return;
        };
        produced.extend(values);
        // Each version's records reach the table before the next version.
        wait_for_table_rows(&broker, TABLE, 10 * version as u64);
    }
    check_every_reader(&broker, &produced);
}

/// The archiver can lag the producers by several schema versions (it was
/// down, or behind): records of v1, v2 and v3 reach the table in one
/// commit, made when v3 is already the latest. Each is read with its own
/// version, so the table ends as it does when it follows every version.
#[test]
fn an_archiver_that_lags_several_versions_keeps_every_field() {
    // An hour between table commits: nothing is archived while producing.
    let mut broker = Broker::start_with(&["--table-commit-interval-ms", "3600000"]);
    broker.create_topic(TOPIC, 1, &[]);
    let mut produced: Vec<String> = Vec::new();
    for version in 1..=3 {
        let Some(values) = produce_version(&broker, version) else {
            return;
        };
        produced.extend(values);
    }
    assert_eq!(
        table_rows(&broker, TABLE).unwrap_or(0),
        0,
        "nothing should be archived yet"
    );
    // Killed, so that shutdown does not archive either; the records are
    // in the log, acknowledged with acks=all.
    broker.kill9();
    broker.restart_with(&["--table-commit-interval-ms", "200"]);
    wait_for_table_rows(&broker, TABLE, 30);
    check_every_reader(&broker, &produced);
}

/// Produces the ten records of schema `version` with confluent-kafka's
/// serializer; their values as hex. `None` without Python.
fn produce_version(broker: &Broker, version: usize) -> Option<Vec<String>> {
    let registry = format!("http://{}", broker.registry_addr());
    let out = run_python(
        PRODUCE,
        &[&broker.bootstrap(), &registry, TOPIC, &version.to_string()],
        Duration::from_secs(120),
    )?;
    let stdout = expect_success(&format!("producing schema version {version}"), &out);
    Some(serde_json::from_str(stdout.trim()).expect("hex values"))
}

/// PyIceberg, DuckDB, a Kafka consumer and `sluice sql` each see all 30
/// records with the fields of their own version.
fn check_every_reader(broker: &Broker, produced: &[String]) {
    let produced = serde_json::to_string(produced).unwrap();
    let rest = format!("http://{}", broker.http_addr());
    let out = run_python(
        READ,
        &[
            &broker.bootstrap(),
            &rest,
            &format!("kafka.{TABLE}"),
            TOPIC,
            produced.trim(),
        ],
        Duration::from_secs(120),
    )
    .expect("python ran before");
    let stdout = expect_success("reading every version", &out);
    assert!(stdout.contains("ok"), "{stdout}");

    // `sluice sql` reads files of all three versions in one query: the
    // coupon is NULL where it did not exist yet, the retired amount is
    // there for the rows that had one.
    let http = broker.http_addr();
    let rows = sluice_cli(&[
        "sql",
        &format!(
            "SELECT value['order_id'] AS id, value['amount'] AS amount, value['coupon'] AS coupon \
             FROM {TABLE} ORDER BY kafka_offset"
        ),
        "--http",
        &http,
    ]);
    let got = cells(&rows);
    let expected: Vec<Vec<String>> = (0..30)
        .map(|n| {
            vec![
                format!("o-{n}"),
                if n < 20 {
                    (100 + n).to_string()
                } else {
                    "NULL".into()
                },
                if n < 10 {
                    "NULL".into()
                } else {
                    format!("c-{n}")
                },
            ]
        })
        .collect();
    assert_eq!(got, expected, "{rows}");
    let groups = sluice_cli(&[
        "sql",
        &format!(
            "SELECT value['coupon'] IS NULL AS no_coupon, count(*) AS n FROM {TABLE} \
             GROUP BY 1 ORDER BY 1"
        ),
        "--http",
        &http,
    ]);
    let got = cells(&groups);
    assert_eq!(
        got,
        vec![vec!["false", "20"], vec!["true", "10"]],
        "{groups}"
    );

    // `sluice table describe` tells which version brought in each column
    // and which retired it, however many versions a commit took in.
    let described = sluice_cli(&["table", "describe", TOPIC, "--http", &http]);
    let column = |name: &str| -> Vec<String> {
        described
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no column {name} in:\n{described}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // COLUMN TYPE ID REQUIRED ADDED-IN RETIRED-IN
    assert_eq!(column("value.order_id")[1], "string", "{described}");
    assert_eq!(column("value.order_id")[4..], ["v1", "-"], "{described}");
    assert_eq!(column("value.coupon")[4..], ["v2", "-"], "{described}");
    assert_eq!(column("value.amount")[1], "long", "{described}");
    assert_eq!(column("value.amount")[4..], ["v1", "v3"], "{described}");
    assert_eq!(
        column("kafka_offset")[3..],
        ["yes", "-", "-"],
        "{described}"
    );
    assert!(
        described.contains("shop.Order (subject evolving.orders-value, version 3)"),
        "{described}"
    );
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("records") && l.ends_with(" 30")),
        "{described}"
    );
}

/// Produces five records whose key is an `OrderKey` (serialized as the
/// key, subject `T-key`) and whose value is an `Order`, with
/// confluent-kafka's serializers. Prints the keys as hex.
const PRODUCE_KEYED: &str = r#"
import json, sys
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import SerializationContext, MessageField

addr, registry, topic = sys.argv[1], sys.argv[2], sys.argv[3]
T = descriptor_pb2.FieldDescriptorProto
def message_class(file, name, fields):
    f = descriptor_pb2.FileDescriptorProto(name=file, package="shop", syntax="proto3")
    m = f.message_type.add(name=name)
    for fname, number, ftype in fields:
        m.field.add(name=fname, number=number, type=ftype, label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop." + name))
Key = message_class("shop/order_key.proto", "OrderKey", [("tenant", 1, T.TYPE_STRING), ("number", 2, T.TYPE_INT64)])
Order = message_class("shop/order.proto", "Order", [("order_id", 1, T.TYPE_STRING), ("amount", 2, T.TYPE_INT64)])
sr = SchemaRegistryClient({"url": registry})
keys = ProtobufSerializer(Key, sr, {"use.deprecated.format": False})
values = ProtobufSerializer(Order, sr, {"use.deprecated.format": False})
p = Producer({"bootstrap.servers": addr, "acks": "all"})
failed, produced = [], []
for n in range(5):
    key = keys(Key(tenant=f"t-{n % 2}", number=1000 + n), SerializationContext(topic, MessageField.KEY))
    value = values(Order(order_id=f"o-{n}", amount=n), SerializationContext(topic, MessageField.VALUE))
    produced.append(key.hex())
    p.produce(topic, key=key, value=value, callback=lambda err, msg: err and failed.append(str(err)))
p.flush(30)
assert not failed, failed
print(json.dumps(produced))
"#;

/// Reads the keyed topic's table with PyIceberg and DuckDB.
const READ_KEYED: &str = r#"
import json, os, sys
from pyiceberg.catalog.rest import RestCatalog
rest_uri, table_name, produced = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
t = RestCatalog("sluice", uri=rest_uri).load_table(table_name)
rows = sorted(t.scan().to_arrow().to_pylist(), key=lambda r: r["kafka_offset"])
assert len(rows) == 5, len(rows)
for n, r in enumerate(rows):
    assert r["key"] == {"tenant": f"t-{n % 2}", "number": 1000 + n}, (n, r["key"])
    assert r["value"]["order_id"] == f"o-{n}", (n, r["value"])
# The key's bytes stay as produced beside the decoded fields.
assert [r["kafka_key"].hex() for r in rows] == produced

import duckdb, duckdb_extension_avro, duckdb_extension_iceberg
con = duckdb.connect()
for mod, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
    path = os.path.join(os.path.dirname(mod.__file__), "extensions", "v" + duckdb.__version__, name + ".duckdb_extension")
    con.load_extension(path)
got = con.execute("SELECT key.tenant, sum(key.number), count(*) FROM iceberg_scan(?) GROUP BY 1 ORDER BY 1",
                  [t.metadata_location.removeprefix("file://")]).fetchall()
assert got == [("t-0", 1000 + 1002 + 1004, 3), ("t-1", 1001 + 1003, 2)], got
print("ok")
"#;

/// A topic with a key schema (subject `T-key`) gets a `key` column with the
/// key's fields, beside `kafka_key` with its bytes, in every engine.
#[test]
fn keys_with_a_schema_get_columns_of_their_own() {
    const KEYED: &str = "keyed.orders";
    let broker = Broker::start_with(&["--table-commit-interval-ms", "200"]);
    broker.create_topic(KEYED, 1, &[]);
    let registry = format!("http://{}", broker.registry_addr());
    let Some(out) = run_python(
        PRODUCE_KEYED,
        &[&broker.bootstrap(), &registry, KEYED],
        Duration::from_secs(120),
    ) else {
        return;
    };
    let produced = expect_success("producing keyed orders", &out);
    wait_for_table_rows(&broker, "keyed_orders", 5);
    let rest = format!("http://{}", broker.http_addr());
    let out = run_python(
        READ_KEYED,
        &[&rest, "kafka.keyed_orders", produced.trim()],
        Duration::from_secs(120),
    )
    .expect("python ran before");
    let stdout = expect_success("reading the keyed table", &out);
    assert!(stdout.contains("ok"), "{stdout}");

    let http = broker.http_addr();
    let rows = sluice_cli(&[
        "sql",
        "SELECT key['tenant'] AS tenant, key['number'] AS n, value['order_id'] AS id \
         FROM keyed_orders ORDER BY kafka_offset",
        "--http",
        &http,
    ]);
    let got = cells(&rows);
    let expected: Vec<Vec<String>> = (0..5)
        .map(|n| {
            vec![
                format!("t-{}", n % 2),
                (1000 + n).to_string(),
                format!("o-{n}"),
            ]
        })
        .collect();
    assert_eq!(got, expected, "{rows}");

    let described = sluice_cli(&["table", "describe", KEYED, "--http", &http]);
    assert!(
        described.contains("shop.OrderKey (subject keyed.orders-key, version 1)"),
        "{described}"
    );
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("key.number ") && l.contains(" long ") && l.contains(" v1 ")),
        "{described}"
    );
}

/// The cells of a table `sluice sql` printed, header left out.
fn cells(table: &str) -> Vec<Vec<&str>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect()
}
