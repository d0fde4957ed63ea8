//! Which message a topic's table holds when its schema declares several:
//! the one the records' framing names, whatever its place in the file.
//! Records are produced by confluent-kafka's ProtobufSerializer (which
//! registers the schema and frames each record with its message index),
//! then the table is read with PyIceberg, DuckDB and `sluice sql`.

use std::time::Duration;

use sluice_tests::{Broker, expect_success, run_python};

use crate::lakehouse::{sluice_cli, wait_for_table_rows};

const TOPIC: &str = "tm.orders";
const TABLE: &str = "tm_orders";

/// Produces 10 `Order`s (the second of three messages) and then 2
/// `Customer`s (the first) with the ProtobufSerializer.
const PRODUCE: &str = r#"
import sys
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from confluent_kafka import SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import StringSerializer

addr, registry, topic = sys.argv[1], sys.argv[2], sys.argv[3]
T = descriptor_pb2.FieldDescriptorProto
f = descriptor_pb2.FileDescriptorProto(name="shop/v1/orders.proto", package="shop.v1", syntax="proto3")
def message(name, fields):
    m = f.message_type.add(name=name)
    for number, (fname, ftype, type_name) in enumerate(fields, start=1):
        fd = m.field.add(name=fname, number=number, type=ftype, label=T.LABEL_OPTIONAL)
        if type_name:
            fd.type_name = type_name
message("Customer", [("email", T.TYPE_STRING, None), ("name", T.TYPE_STRING, None)])
message("Order", [("order_id", T.TYPE_STRING, None), ("amount", T.TYPE_INT64, None),
                  ("customer", T.TYPE_MESSAGE, ".shop.v1.Customer")])
message("Refund", [("order_id", T.TYPE_STRING, None), ("reason", T.TYPE_STRING, None)])
pool = descriptor_pool.DescriptorPool()
pool.Add(f)
Customer = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.v1.Customer"))
Order = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.v1.Order"))

sr = SchemaRegistryClient({"url": registry})
def producer(cls):
    return SerializingProducer({
        "bootstrap.servers": addr,
        "key.serializer": StringSerializer(),
        "value.serializer": ProtobufSerializer(cls, sr, {"use.deprecated.format": False}),
    })
failed = []
def report(err, msg):
    if err is not None:
        failed.append(str(err))
p = producer(Order)
for n in range(10):
    o = Order(order_id=f"o-{n}", amount=100 * n + 7,
              customer=Customer(email=f"c{n}@example.com", name=f"Customer {n}"))
    p.produce(topic, key=f"k-{n}", value=o, on_delivery=report)
p.flush(30)
c = producer(Customer)
for n in range(2):
    c.produce(topic, key=f"c-{n}", value=Customer(email=f"stray{n}@example.com"), on_delivery=report)
c.flush(30)
assert not failed, failed
print("produced")
"#;

/// Reads the table with PyIceberg (REST catalog) and DuckDB (iceberg_scan).
const READ: &str = r#"
import json, os, sys
from pyiceberg.catalog.rest import RestCatalog
rest_uri, table_name = sys.argv[1], sys.argv[2]
t = RestCatalog("sluice", uri=rest_uri).load_table(table_name)
rows = t.scan().to_arrow()
fields = [f.name for f in rows.schema.field("value").type]
assert fields == ["order_id", "amount", "customer"], fields
recs = sorted(rows.to_pylist(), key=lambda r: r["kafka_offset"])
assert len(recs) == 12, len(recs)
for n, r in enumerate(recs[:10]):
    v = r["value"]
    assert v == {"order_id": f"o-{n}", "amount": 100 * n + 7,
                 "customer": {"email": f"c{n}@example.com", "name": f"Customer {n}"}}, (n, v)
for r in recs[10:]:
    # A Customer is not an Order: no value, its bytes kept as produced.
    assert r["value"] is None, r
    assert r["kafka_value"] is not None and r["kafka_value"][0] == 0, r

import duckdb, duckdb_extension_avro, duckdb_extension_iceberg
con = duckdb.connect()
for mod, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
    path = os.path.join(os.path.dirname(mod.__file__), "extensions", "v" + duckdb.__version__, name + ".duckdb_extension")
    con.load_extension(path)
got = con.execute(
    "SELECT value.order_id, value.amount, value.customer.email FROM iceberg_scan(?) "
    "WHERE value IS NOT NULL ORDER BY kafka_offset",
    [t.metadata_location.removeprefix("file://")]).fetchall()
assert got == [(f"o-{n}", 100 * n + 7, f"c{n}@example.com") for n in range(10)], got
print("ok")
"#;

#[test]
fn the_table_follows_the_message_the_records_name() {
    let broker = Broker::start_with(&["--table-commit-interval-ms", "200"]);
    broker.create_topic(TOPIC, 1, &[]);
    let registry = format!("http://{}", broker.registry_addr());
    let Some(out) = run_python(
        PRODUCE,
        &[&broker.bootstrap(), &registry, TOPIC],
        Duration::from_secs(120),
    ) else {
        return;
    };
    expect_success("producing with the ProtobufSerializer", &out);
    wait_for_table_rows(&broker, TABLE, 12);

    let rest = format!("http://{}", broker.http_addr());
    let out = run_python(
        READ,
        &[&rest, &format!("kafka.{TABLE}")],
        Duration::from_secs(120),
    )
    .expect("python ran before");
    let stdout = expect_success("reading the table with PyIceberg and DuckDB", &out);
    assert!(stdout.contains("ok"), "{stdout}");

    // `sluice sql`: the README's nested-field query, and null values.
    let http = broker.http_addr();
    let emails = sluice_cli(&[
        "sql",
        &format!(
            "SELECT value['order_id'] AS id, value['customer']['email'] AS email FROM {TABLE} \
             WHERE value['amount'] > 500 ORDER BY kafka_offset"
        ),
        "--http",
        &http,
    ]);
    let lines: Vec<Vec<&str>> = emails
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expected: Vec<Vec<String>> = (5..10)
        .map(|n| vec![format!("o-{n}"), format!("c{n}@example.com")])
        .collect();
    assert_eq!(lines, expected, "{emails}");
    let nulls = sluice_cli(&[
        "sql",
        &format!("SELECT count(*) AS n FROM {TABLE} WHERE value IS NULL"),
        "--http",
        &http,
    ]);
    assert_eq!(nulls.lines().nth(1).map(str::trim), Some("2"), "{nulls}");
    let not_null = sluice_cli(&[
        "sql",
        &format!("SELECT count(*) AS n FROM {TABLE} WHERE value IS NOT NULL AND kafka_offset >= 3"),
        "--http",
        &http,
    ]);
    assert_eq!(
        not_null.lines().nth(1).map(str::trim),
        Some("7"),
        "{not_null}"
    );

    // The two Customers were reported, not silently nulled.
    let (_, metrics) =
        sluice_tests::orders::http(&http, "GET", "/metrics", None).expect("GET /metrics");
    let counted = metrics
        .lines()
        .find(|l| {
            l.starts_with("sluice_archiver_undecoded_records_total") && l.contains("tm.orders")
        })
        .unwrap_or_default()
        .to_string();
    assert!(counted.ends_with(" 2"), "metric: {counted:?}");
    let log = broker.log();
    assert!(
        log.contains("value is a shop.v1.Customer"),
        "the log says why values were left out"
    );
}
