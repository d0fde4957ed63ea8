//! Topics are Iceberg tables: records produced with librdkafka are read
//! back as typed rows by PyIceberg (through the SQL catalog in the metadata
//! database and through the REST catalog) and by DuckDB, and a schema
//! evolution adds a column that older rows show as null.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::admin::AdminOptions;
use rdkafka::producer::{BaseRecord, Producer};
use sluice_proto::CompiledSchema;
use sluice_proto::prost_reflect::{DynamicMessage, Value};
use sluice_tests::orders::http;
use sluice_tests::{Broker, OP_TIMEOUT, block_on, expect_success, run_python};

use crate::common::{assert_same_log, produce_generated, read_all};

const SHIPMENT_V1: &str = r#"syntax = "proto3";
package lake;
import "google/protobuf/timestamp.proto";

message Shipment {
  string id = 1;
  Customer customer = 2;
  repeated Parcel parcels = 3;
  map<string, int32> labels = 4;
  Status status = 5;
  google.protobuf.Timestamp shipped_at = 6;
  double weight_kg = 7;
}
message Customer { string email = 1; string name = 2; }
message Parcel { string sku = 1; int32 quantity = 2; }
enum Status { STATUS_UNKNOWN = 0; PACKED = 1; SHIPPED = 2; }
"#;

/// Version 2 adds `carrier` (a compatible change).
fn shipment_v2() -> String {
    SHIPMENT_V1.replace(
        "double weight_kg = 7;",
        "double weight_kg = 7;\n  string carrier = 8;",
    )
}

fn register(registry: &str, subject: &str, schema: &str) -> u32 {
    let body = serde_json::json!({"schema": schema, "schemaType": "PROTOBUF"}).to_string();
    let (status, text) = http(
        registry,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(&body),
    )
    .expect("registry request");
    assert_eq!(status, 200, "register {subject}: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("registry json");
    v["id"].as_u64().expect("id") as u32
}

fn shipment(schema: &CompiledSchema, n: u32, carrier: Option<&str>) -> Vec<u8> {
    let pool = schema.pool();
    let message = |name: &str| DynamicMessage::new(pool.get_message_by_name(name).unwrap());
    let mut s = message("lake.Shipment");
    s.set_field_by_name("id", Value::String(format!("s-{n}")));
    let mut customer = message("lake.Customer");
    customer.set_field_by_name("email", Value::String(format!("c{n}@example.com")));
    customer.set_field_by_name("name", Value::String(format!("Customer {n}")));
    s.set_field_by_name("customer", Value::Message(customer));
    let parcels = (0..n % 3 + 1)
        .map(|i| {
            let mut p = message("lake.Parcel");
            p.set_field_by_name("sku", Value::String(format!("sku-{n}-{i}")));
            p.set_field_by_name("quantity", Value::I32(i as i32 + 1));
            Value::Message(p)
        })
        .collect();
    s.set_field_by_name("parcels", Value::List(parcels));
    let mut labels = std::collections::HashMap::new();
    labels.insert(
        sluice_proto::prost_reflect::MapKey::String("priority".into()),
        Value::I32(n as i32),
    );
    s.set_field_by_name("labels", Value::Map(labels));
    s.set_field_by_name(
        "status",
        Value::EnumNumber(if n.is_multiple_of(2) { 1 } else { 2 }),
    );
    let mut ts = message("google.protobuf.Timestamp");
    ts.set_field_by_name("seconds", Value::I64(1_760_000_000 + n as i64));
    ts.set_field_by_name("nanos", Value::I32(500_000_000));
    s.set_field_by_name("shipped_at", Value::Message(ts));
    s.set_field_by_name("weight_kg", Value::F64(n as f64 + 0.25));
    if let Some(c) = carrier {
        s.set_field_by_name("carrier", Value::String(c.into()));
    }
    s.encode_to_vec()
}

fn produce(broker: &Broker, topic: &str, records: &[(String, Vec<u8>)]) {
    let producer = broker.producer(&[("enable.idempotence", "true"), ("linger.ms", "5")]);
    for (i, (key, value)) in records.iter().enumerate() {
        producer
            .send(
                BaseRecord::with_opaque_to(topic, i)
                    .partition((i % 2) as i32)
                    .key(key.as_bytes())
                    .payload(value.as_slice()),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(
        producer.context().failed(),
        0,
        "every record is acknowledged"
    );
}

/// Waits until the table has `rows` rows, then checks them with PyIceberg
/// through both catalogs and with DuckDB. Prints "ok" on success.
const READ_TABLE: &str = r#"
import json, sys, time
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.catalog.rest import RestCatalog

db, rest_uri, table_name, expected, with_carrier = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
sql = SqlCatalog("sluice", uri=f"sqlite:///{db}")
rest = RestCatalog("sluice", uri=rest_uri)

deadline = time.time() + 20
rows = None
while time.time() < deadline:
    try:
        t = rest.load_table(table_name)
        rows = t.scan().to_arrow()
        if rows.num_rows >= expected and (not with_carrier or "carrier" in [f.name for f in rows.schema.field("value").type]):
            break
    except Exception as e:
        last = e
    time.sleep(0.2)
assert rows is not None and rows.num_rows == expected, f"REST catalog: expected {expected} rows, got {None if rows is None else rows.num_rows}"

sql_rows = sql.load_table(table_name).scan().to_arrow()
assert sql_rows.num_rows == expected, f"SQL catalog sees {sql_rows.num_rows} rows"

schema = rows.schema
value_type = schema.field("value").type
types = {f.name: str(f.type) for f in value_type}
assert str(schema.field("kafka_timestamp").type).startswith("timestamp[us, tz="), schema.field("kafka_timestamp").type
assert str(schema.field("kafka_offset").type) == "int64"
assert types["id"] in ("string", "large_string"), types
assert types["status"] in ("string", "large_string"), types
assert types["shipped_at"].startswith("timestamp[us, tz="), types
assert types["weight_kg"] == "double", types
assert types["customer"].startswith("struct<email"), types
assert types["parcels"].startswith("list<"), types
assert types["labels"].startswith("map<"), types

recs = sorted(rows.to_pylist(), key=lambda r: int(r["value"]["id"][2:]))
assert [int(r["value"]["id"][2:]) for r in recs] == list(range(expected)), [r["value"]["id"] for r in recs]
for r in recs:
    n = int(r["value"]["id"][2:])
    v = r["value"]
    assert r["kafka_key"] == f"k-{n}".encode(), r["kafka_key"]
    assert v["customer"]["email"] == f"c{n}@example.com"
    assert v["status"] == ("PACKED" if n % 2 == 0 else "SHIPPED"), v["status"]
    assert [p["sku"] for p in v["parcels"]] == [f"sku-{n}-{i}" for i in range(n % 3 + 1)]
    assert dict(v["labels"]) == {"priority": n}, v["labels"]
    assert v["shipped_at"].timestamp() == 1_760_000_000 + n + 0.5, v["shipped_at"]
    assert v["weight_kg"] == n + 0.25
    if with_carrier:
        assert v["carrier"] == (None if n < 20 else f"carrier-{n}"), (n, v["carrier"])

# Every offset of each partition once, in order, with no gaps.
for p in (0, 1):
    offs = sorted(r["kafka_offset"] for r in recs if r["kafka_partition"] == p)
    assert offs == list(range(len(offs))), (p, offs)

import duckdb
con = duckdb.connect()
files = [task.file.file_path.removeprefix("file://") for task in t.scan().plan_files()]
count = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()[0]
assert count == expected, f"duckdb read_parquet counted {count}"
emails = con.execute("SELECT count(DISTINCT value.customer.email) FROM read_parquet(?)", [files]).fetchone()[0]
assert emails == expected, emails
# The iceberg extension (and the avro one it reads manifests with) come
# from PyPI wheels, so they load without network access.
import os, duckdb_extension_avro, duckdb_extension_iceberg
for mod, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
    path = os.path.join(os.path.dirname(mod.__file__), "extensions", "v" + duckdb.__version__, name + ".duckdb_extension")
    con.load_extension(path)
n = con.execute("SELECT count(*) FROM iceberg_scan(?)", [t.metadata_location.removeprefix("file://")]).fetchone()[0]
assert n == expected, f"duckdb iceberg_scan counted {n}"
print("ok")
"#;

#[test]
fn topic_is_an_iceberg_table() {
    let broker = Broker::start_with(&["--table-commit-interval-ms", "200"]);
    let topic = "lake.shipments";
    let registry = broker.registry_addr();
    let v1_id = register(&registry, &format!("{topic}-value"), SHIPMENT_V1);
    broker.create_topic(topic, 2, &[]);

    let v1 = CompiledSchema::compile(SHIPMENT_V1, &BTreeMap::new()).unwrap();
    let records: Vec<(String, Vec<u8>)> = (0..20)
        .map(|n| {
            let payload = shipment(&v1, n, None);
            (
                format!("k-{n}"),
                sluice_proto::encode_frame(v1_id, &[0], &payload),
            )
        })
        .collect();
    produce(&broker, topic, &records);

    let db = broker.data_dir().join("metadata.db");
    let rest = format!("http://{}", broker.http_addr());
    let out = run_python(
        READ_TABLE,
        &[
            db.to_str().unwrap(),
            &rest,
            "kafka.lake_shipments",
            "20",
            "0",
        ],
        Duration::from_secs(120),
    );
    let Some(out) = out else { return };
    let stdout = expect_success("reading the table with PyIceberg and DuckDB", &out);
    assert!(stdout.contains("ok"), "{stdout}");

    // `sluice sql` reads the same table, typed columns included.
    let http_addr = broker.http_addr();
    let table = sluice_cli(&[
        "sql",
        "SELECT count(*) AS n, count(DISTINCT value['customer']['email']) AS emails, \
         max(value['weight_kg']) AS heaviest FROM lake_shipments WHERE value['status'] = 'PACKED'",
        "--http",
        &http_addr,
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["10", "10", "18.25"],
        "{table}"
    );
    let refused = sluice_tests::run_with_timeout(
        std::process::Command::new(sluice_tests::sluice_bin().unwrap()).args([
            "sql",
            "INSERT INTO lake_shipments (kafka_partition) VALUES (1)",
            "--http",
            &http_addr,
        ]),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(!refused.status.success(), "writes through SQL are refused");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not supported")
            || String::from_utf8_lossy(&refused.stderr).contains("DML"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Evolve: version 2 adds a field; the table gains a column, older rows
    // read it as null.
    let v2_text = shipment_v2();
    let v2_id = register(&registry, &format!("{topic}-value"), &v2_text);
    assert_ne!(v1_id, v2_id);
    let v2 = CompiledSchema::compile(&v2_text, &BTreeMap::new()).unwrap();
    let more: Vec<(String, Vec<u8>)> = (20..26)
        .map(|n| {
            let payload = shipment(&v2, n, Some(&format!("carrier-{n}")));
            (
                format!("k-{n}"),
                sluice_proto::encode_frame(v2_id, &[0], &payload),
            )
        })
        .collect();
    produce(&broker, topic, &more);
    let out = run_python(
        READ_TABLE,
        &[
            db.to_str().unwrap(),
            &rest,
            "kafka.lake_shipments",
            "26",
            "1",
        ],
        Duration::from_secs(120),
    )
    .expect("python ran before");
    let stdout = expect_success("reading the evolved table", &out);
    assert!(stdout.contains("ok"), "{stdout}");

    // Deleting the topic deletes its table, as it deletes its data.
    let table_path = "/v1/namespaces/kafka/tables/lake_shipments";
    let (status, _) = http(&broker.http_addr(), "GET", table_path, None).unwrap();
    assert_eq!(status, 200);
    let admin = broker.admin();
    let res = block_on(
        admin.delete_topics(&[topic], &AdminOptions::new()),
        OP_TIMEOUT,
    )
    .expect("delete in time")
    .expect("delete");
    assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http(&broker.http_addr(), "GET", table_path, None).unwrap();
        if status == 404 {
            assert!(body.contains("NoSuchTableException"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the table outlived its topic");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the topic's table holds `records` rows (per the snapshot
/// summary served by the REST catalog).
pub(crate) fn wait_for_table_rows(broker: &Broker, table: &str, records: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = table_rows(broker, table);
        if total == Some(records) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "table {table} did not reach {records} rows: it has {total:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The rows in the current snapshot of `kafka.{table}`, as the REST
/// catalog reports them; `None` if there is no table or no snapshot yet.
pub(crate) fn table_rows(broker: &Broker, table: &str) -> Option<u64> {
    let path = format!("/v1/namespaces/kafka/tables/{table}");
    let (status, body) = http(&broker.http_addr(), "GET", &path, None).unwrap();
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let current = v["metadata"]["current-snapshot-id"].as_i64();
    v["metadata"]["snapshots"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["snapshot-id"].as_i64() == current)
        .and_then(|s| s["summary"]["total-records"].as_str())
        .and_then(|t| t.parse::<u64>().ok())
}

fn segment_files(broker: &Broker) -> Vec<std::path::PathBuf> {
    let dir = broker.data_dir().join("objects").join("segments");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Once archived, a topic's segments are deleted and consumers reading from
/// offset 0 get every record back from the Parquet files, byte for byte
/// (keys, values, headers with repeated names and null values, timestamps,
/// offsets).
#[test]
fn archived_records_are_served_from_the_table() {
    let mut broker = Broker::start_with(&[
        "--table-commit-interval-ms",
        "200",
        "--retention-check-secs",
        "1",
    ]);
    broker.create_topic("lake-plain", 3, &[("sluice.table.partitioning", "hour")]);
    let expected = produce_generated(
        &broker,
        "lake-plain",
        3,
        3_000,
        21,
        &[("compression.type", "zstd")],
    );
    wait_for_table_rows(&broker, "lake_plain", 3_000);
    let (_, body) = http(
        &broker.http_addr(),
        "GET",
        "/v1/namespaces/kafka/tables/lake_plain",
        None,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let default_spec = v["metadata"]["default-spec-id"].clone();
    let spec = v["metadata"]["partition-specs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spec-id"] == default_spec)
        .unwrap()
        .clone();
    assert_eq!(spec["fields"][0]["transform"], "hour", "{spec}");

    // A restart starts a new segment file; the old one only holds archived
    // batches now, so retention's clean-up deletes it.
    let before = segment_files(&broker);
    assert!(!before.is_empty(), "segments were written");
    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while segment_files(&broker).iter().any(|f| before.contains(f)) {
        assert!(
            Instant::now() < deadline,
            "archived segments were not deleted: {:?}",
            segment_files(&broker)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let got = read_all(&broker, "lake-plain", 3, Duration::from_secs(120));
    assert_same_log(&got, &expected);
}

fn current_summary(broker: &Broker, table: &str) -> serde_json::Value {
    let path = format!("/v1/namespaces/kafka/tables/{table}");
    let (status, body) = http(&broker.http_addr(), "GET", &path, None).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let current = v["metadata"]["current-snapshot-id"].clone();
    v["metadata"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot-id"] == current)
        .map(|s| s["summary"].clone())
        .unwrap()
}

/// Counts the table's rows with PyIceberg (REST catalog) and DuckDB's
/// iceberg_scan; prints "rows N N".
const COUNT_ROWS: &str = r#"
import os, sys, duckdb, duckdb_extension_avro, duckdb_extension_iceberg
from pyiceberg.catalog.rest import RestCatalog
t = RestCatalog("sluice", uri=sys.argv[1]).load_table(sys.argv[2])
n = t.scan().to_arrow().num_rows
con = duckdb.connect()
for mod, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
    con.load_extension(os.path.join(os.path.dirname(mod.__file__), "extensions", "v" + duckdb.__version__, name + ".duckdb_extension"))
d = con.execute("SELECT count(*) FROM iceberg_scan(?)", [t.metadata_location.removeprefix("file://")]).fetchone()[0]
print("rows", n, d)
"#;

/// 200 small commits, then `sluice table compact`: a few files remain, the
/// row count is unchanged for PyIceberg and DuckDB, and Kafka consumers
/// still read every record byte for byte from offset 0.
#[test]
fn compaction_keeps_rows_and_kafka_reads() {
    let broker = Broker::start_with(&["--table-commit-interval-ms", "20"]);
    broker.create_topic("lake-small", 2, &[]);
    let base_ts = sluice_tests::now_ms();
    let records: Vec<sluice_tests::Rec> = (0..200)
        .map(|i| crate::common::gen_record(33, i, 2, base_ts))
        .collect();
    let producer = broker.producer(crate::common::SAFE_PRODUCER);
    let mut reports = Vec::new();
    for (i, r) in records.iter().enumerate() {
        reports.extend(crate::common::produce_all(
            &producer,
            "lake-small",
            std::slice::from_ref(r),
            Duration::from_secs(30),
        ));
        if let Some(last) = reports.last_mut() {
            last.id = i;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    crate::common::assert_all_acked(&reports, records.len());
    let expected = crate::common::expected_log(&records, &reports);
    wait_for_table_rows(&broker, "lake_small", 200);
    let before: u64 = current_summary(&broker, "lake_small")["total-data-files"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(before >= 50, "expected many small files, got {before}");

    let stdout = sluice_cli(&[
        "table",
        "compact",
        "lake-small",
        "--http",
        &broker.http_addr(),
    ]);
    assert!(stdout.contains("small files rewritten"), "{stdout}");

    let summary = current_summary(&broker, "lake_small");
    let after: u64 = summary["total-data-files"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        after <= 3,
        "compaction left {after} files (from {before}): {stdout}"
    );
    assert_eq!(summary["total-records"], "200", "{summary}");

    if let Some(out) = run_python(
        COUNT_ROWS,
        &[
            &format!("http://{}", broker.http_addr()),
            "kafka.lake_small",
        ],
        Duration::from_secs(120),
    ) {
        let stdout = expect_success("counting rows after compaction", &out);
        assert!(stdout.contains("rows 200 200"), "{stdout}");
    }

    let got = read_all(&broker, "lake-small", 2, Duration::from_secs(60));
    assert_same_log(&got, &expected);
}

pub(crate) fn sluice_cli(args: &[&str]) -> String {
    let out = sluice_tests::run_with_timeout(
        std::process::Command::new(sluice_tests::sluice_bin().unwrap()).args(args),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    expect_success(&format!("sluice {}", args.join(" ")), &out)
}

/// Retention deletes table data too: once retention has removed a topic's
/// old records, maintenance drops the data files that held only them.
#[test]
fn retention_removes_table_files() {
    let broker = Broker::start_with(&[
        "--table-commit-interval-ms",
        "100",
        "--retention-check-secs",
        "1",
    ]);
    broker.create_topic("lake-ret", 1, &[]);
    let old_ts = sluice_tests::now_ms() - 2 * 3_600_000;
    let old: Vec<sluice_tests::Rec> = (0..10)
        .map(|i| crate::common::gen_record(44, i, 1, old_ts))
        .collect();
    let producer = broker.producer(crate::common::SAFE_PRODUCER);
    let reports = crate::common::produce_all(&producer, "lake-ret", &old, Duration::from_secs(30));
    crate::common::assert_all_acked(&reports, old.len());
    wait_for_table_rows(&broker, "lake_ret", 10);
    let new: Vec<sluice_tests::Rec> = (10..15)
        .map(|i| crate::common::gen_record(44, i, 1, sluice_tests::now_ms()))
        .collect();
    let reports = crate::common::produce_all(&producer, "lake-ret", &new, Duration::from_secs(30));
    crate::common::assert_all_acked(&reports, new.len());
    wait_for_table_rows(&broker, "lake_ret", 15);

    let bootstrap = broker.bootstrap();
    sluice_cli(&[
        "topics",
        "alter-config",
        "lake-ret",
        "--set",
        "retention.ms=3600000",
        "-b",
        &bootstrap,
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while broker.watermarks("lake-ret", 0).0 < 10 {
        assert!(Instant::now() < deadline, "retention did not run");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stdout = sluice_cli(&[
        "table",
        "compact",
        "lake-ret",
        "--http",
        &broker.http_addr(),
    ]);
    let removed = stdout
        .lines()
        .find(|l| l.starts_with("files removed by retention"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(removed.is_some_and(|n| n >= 1), "{stdout}");
    assert_eq!(
        current_summary(&broker, "lake_ret")["total-records"],
        "5",
        "only the records retention kept remain in the table"
    );
    let got = read_all(&broker, "lake-ret", 1, Duration::from_secs(30));
    assert_eq!(got.get(&0).map(Vec::len), Some(5));
}
