//! Schema evolution change by change, as producers and readers live it.
//! Two topics each go through four versions of their value schema,
//! registered by confluent-kafka's ProtobufSerializer (or deployed to the
//! registry ahead of a producer that uses the latest version). Each
//! version's records reach the table before the next version starts (or,
//! in the last test, the archiver catches up with all of them at once).
//! Then PyIceberg, DuckDB (`iceberg_scan`) and `sluice sql` read every
//! row, and a Kafka consumer reads every record back byte for byte.
//!
//! - `matrix.orders`: a renamed field, int32 → int64 and float → double
//!   widening, a new enum value, a nested message that grows a field, and
//!   an int32 → string change under compatibility NONE, after which a
//!   producer still on version 1 keeps writing.
//! - `matrix.shipments`: a repeated field and a map, a oneof,
//!   `google.protobuf.Timestamp` and wrapper types.

use std::time::Duration;

use sluice_tests::orders::http;
use sluice_tests::{Broker, expect_success, run_python};

use crate::lakehouse::{sluice_cli, table_rows, wait_for_table_rows};

/// Records each schema version produces (the same in both topics).
const PER_VERSION: usize = 4;
/// Orders in the topic: four versions, then the late version 1 producer's.
const ORDERS: usize = 4 * PER_VERSION + 2;
const SHIPMENTS: usize = 4 * PER_VERSION;
const ORDERS_TOPIC: &str = "matrix.orders";
const ORDERS_TABLE: &str = "matrix_orders";
const SHIPMENTS_TOPIC: &str = "matrix.shipments";
const SHIPMENTS_TABLE: &str = "matrix_shipments";

/// Python shared by the producers and readers of `matrix.orders`: the
/// message of each version, built with descriptor_pb2, and what each
/// record holds. Records are numbered by offset; `PER_VERSION` of each
/// version 1-4, then two from a producer still on version 1.
const ORDERS_PY: &str = r#"
import base64, json, sys
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import SerializationContext, MessageField
T = descriptor_pb2.FieldDescriptorProto
PER_VERSION = 4
LATE = range(4 * PER_VERSION, 4 * PER_VERSION + 2)

def version_of(n):
    """The schema version order n is written with."""
    return 1 if n in LATE else n // PER_VERSION + 1

def add(m, name, number, ftype, type_name=""):
    field = m.field.add(name=name, number=number, type=ftype, label=T.LABEL_OPTIONAL)
    if type_name:
        field.type_name = type_name

def order_file(version):
    """shop.Order as version 1-4 declares it: v2 renames `note` (6) to
    `remark`, widens `qty` to int64, adds SHIPPED and `Customer.tier`; v3
    widens `price` to double; v4 makes `code` a string."""
    f = descriptor_pb2.FileDescriptorProto(name="shop/order.proto", package="shop", syntax="proto3")
    order = f.message_type.add(name="Order")
    add(order, "id", 1, T.TYPE_STRING)
    add(order, "qty", 2, T.TYPE_INT32 if version == 1 else T.TYPE_INT64)
    add(order, "price", 3, T.TYPE_FLOAT if version < 3 else T.TYPE_DOUBLE)
    add(order, "status", 4, T.TYPE_ENUM, ".shop.Status")
    add(order, "customer", 5, T.TYPE_MESSAGE, ".shop.Customer")
    add(order, "note" if version == 1 else "remark", 6, T.TYPE_STRING)
    add(order, "code", 7, T.TYPE_INT32 if version < 4 else T.TYPE_STRING)
    customer = f.message_type.add(name="Customer")
    add(customer, "email", 1, T.TYPE_STRING)
    if version >= 2:
        add(customer, "tier", 2, T.TYPE_STRING)
    status = f.enum_type.add(name="Status")
    names = ["STATUS_UNKNOWN", "PENDING", "PAID"] + (["SHIPPED"] if version >= 2 else [])
    for number, name in enumerate(names):
        status.value.add(name=name, number=number)
    return f

def order_class(version):
    pool = descriptor_pool.DescriptorPool()
    pool.Add(order_file(version))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))

# What order n holds. Quantities from version 2 on do not fit an int32,
# prices from version 3 on not a float.
def qty(n):
    return n + 1 if version_of(n) == 1 else 3_000_000_000 + n
def price(n):
    return n + 0.5 if version_of(n) < 3 else 10_000_000_000 + n + 0.125
def status(n):
    return ["PENDING", "PAID"][n % 2] if version_of(n) == 1 else ["PENDING", "PAID", "SHIPPED"][n % 3]
def tier(n):
    return "gold" if n % 2 else "silver"
def code(n):
    return 700 + n if version_of(n) < 4 else f"C-{n}"

def produced_order(cls, n):
    v = version_of(n)
    customer = {"email": f"c{n}@example.com"}
    if v >= 2:
        customer["tier"] = tier(n)
    return cls(**{"id": f"o-{n}", "qty": qty(n), "price": price(n), "status": status(n),
                  "customer": customer, ("note" if v == 1 else "remark"): f"note-{n}",
                  "code": code(n)})

def expected_order(n):
    """The row a reader should get for order n in the table as it ends."""
    v = version_of(n)
    return {
        "id": f"o-{n}",
        "qty": qty(n),
        "price": price(n),
        "status": status(n),
        # Customers of version 1 had no tier.
        "customer": {"email": f"c{n}@example.com", "tier": tier(n) if v >= 2 else None},
        # Version 1 called it `note`: the renamed column holds its values.
        "remark": f"note-{n}",
        # The int32 `code` stays where it was; v4's string one is new.
        "code": code(n) if v < 4 else None,
        "code_v4": code(n) if v == 4 else None,
    }
"#;

/// Produces the orders of one step (argument 4): a version 1-4, or `late`
/// (two more with version 1, after version 4). Prints the values as
/// produced (hex).
const PRODUCE_ORDERS: &str = r#"
addr, registry, topic, step = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
subject = f"{topic}-value"
sr = SchemaRegistryClient({"url": registry})
ctx = SerializationContext(topic, MessageField.VALUE)
late = step == "late"
version = 1 if late else int(step)
cls = order_class(version)
conf = {"use.deprecated.format": False}
if version == 3:
    # float -> double is not wire-compatible: the registry refuses it
    # under its default BACKWARD compatibility...
    try:
        ProtobufSerializer(cls, sr, conf)(cls(id="probe"), ctx)
        refused = None
    except Exception as e:
        refused = str(e)
    assert refused is not None and "409" in refused, refused
    # ... and takes it (and v4's int32 -> string) once the subject's
    # compatibility is NONE.
    sr.set_compatibility(subject_name=subject, level="NONE")
ser = ProtobufSerializer(cls, sr, conf)
p = Producer({"bootstrap.servers": addr, "acks": "all"})
failed, produced = [], []
numbers = LATE if late else range(PER_VERSION * (version - 1), PER_VERSION * version)
for n in numbers:
    value = ser(produced_order(cls, n), ctx)
    # Framed with the schema id of the version it was written with.
    assert int.from_bytes(value[1:5], "big") == sr.get_version(subject, version).schema_id, value[:6].hex()
    produced.append(value.hex())
    p.produce(topic, key=f"o-{n}".encode(), value=value, callback=lambda err, msg: err and failed.append(str(err)))
p.flush(30)
assert not failed, failed
# The late producer's version is the registered version 1, not a new one.
versions = sr.get_versions(subject)
assert len(versions) == (4 if late else version), versions
print(json.dumps(produced))
"#;

/// Python shared by both readers: the table through the REST catalog,
/// DuckDB with the iceberg extension loaded offline, and a Kafka consumer.
const READERS_PY: &str = r#"
import os
from pyiceberg.catalog.rest import RestCatalog
import duckdb, duckdb_extension_avro, duckdb_extension_iceberg

def load(rest_uri, table_name, expected):
    """The table, and its rows in offset order."""
    t = RestCatalog("sluice", uri=rest_uri).load_table(table_name)
    rows = sorted(t.scan().to_arrow().to_pylist(), key=lambda r: r["kafka_offset"])
    assert len(rows) == expected, len(rows)
    return t, rows

def duck(t):
    """A DuckDB connection that can iceberg_scan, and the metadata file."""
    con = duckdb.connect()
    for mod, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        path = os.path.join(os.path.dirname(mod.__file__), "extensions", "v" + duckdb.__version__, name + ".duckdb_extension")
        con.load_extension(path)
    return con, t.metadata_location.removeprefix("file://")

def consume_all(addr, topic, count):
    """Every value of the topic (one partition), as hex."""
    c = Consumer({"bootstrap.servers": addr, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    while len(got) < count:
        m = c.poll(10)
        assert m is not None, f"only {len(got)} records"
        assert not m.error(), m.error()
        got.append(m.value().hex())
    c.close()
    return got
"#;

/// Checks the orders table with PyIceberg and DuckDB and the topic with a
/// consumer. Prints "ok".
const READ_ORDERS: &str = r#"
from pyiceberg.types import DoubleType, FloatType, IntegerType, LongType, StringType, StructType
addr, rest_uri, table_name, topic, produced = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
followed = sys.argv[6] == "followed"
total = 4 * PER_VERSION + len(LATE)
t, rows = load(rest_uri, table_name, total)

# The value struct as PyIceberg sees it: `note` is now `remark`, the
# numbers are widened, the int32 `code` is kept beside v4's `code_v4`.
value = t.schema().find_field("value").field_type
types = {f.name: f.field_type for f in value.fields}
assert sorted(types) == sorted(["id", "qty", "price", "status", "customer", "remark", "code", "code_v4"]), t.schema()
assert isinstance(types["qty"], LongType), types["qty"]
assert isinstance(types["price"], DoubleType), types["price"]
assert isinstance(types["status"], StringType), types["status"]
assert isinstance(types["code"], IntegerType), types["code"]
assert isinstance(types["code_v4"], StringType), types["code_v4"]
assert [f.name for f in types["customer"].fields] == ["email", "tier"], types["customer"]

# Iceberg saw a rename and two promotions, not new columns: the ids are
# those the first schema gave `note`, `qty` (an int) and `price` (a float).
# (A table made after all versions has no such history.)
if followed:
    def field_of(schema, name):
        v = next((f.field_type for f in schema.fields if f.name == "value"), StructType())
        return next((f for f in v.fields if f.name == name), None)
    first = min((s for s in t.schemas().values() if field_of(s, "note") is not None), key=lambda s: s.schema_id)
    current = t.schema()
    assert field_of(first, "remark") is None, first
    assert field_of(first, "note").field_id == field_of(current, "remark").field_id
    assert field_of(first, "qty").field_id == field_of(current, "qty").field_id
    assert isinstance(field_of(first, "qty").field_type, IntegerType), first
    assert field_of(first, "price").field_id == field_of(current, "price").field_id
    assert isinstance(field_of(first, "price").field_type, FloatType), first
    assert field_of(first, "code").field_id == field_of(current, "code").field_id
    assert field_of(current, "code_v4").field_id not in [f.field_id for f in first.find_field("value").field_type.fields]

for n, r in enumerate(rows):
    assert r["kafka_key"] == f"o-{n}".encode(), (n, r["kafka_key"])
    assert r["value"] == expected_order(n), (n, r["value"], expected_order(n))

con, metadata = duck(t)
got = con.execute(
    "SELECT value.id, value.qty, value.price, value.status, value.customer.email, value.customer.tier, "
    "value.remark, value.code, value.code_v4 FROM iceberg_scan(?) ORDER BY kafka_offset", [metadata]).fetchall()
want = []
for n in range(total):
    e = expected_order(n)
    want.append((e["id"], e["qty"], e["price"], e["status"], e["customer"]["email"], e["customer"]["tier"],
                 e["remark"], e["code"], e["code_v4"]))
assert got == want, [(n, g, w) for n, (g, w) in enumerate(zip(got, want)) if g != w] or got
types = dict(con.execute(
    "SELECT column_name, column_type FROM (DESCRIBE SELECT value.qty AS qty, value.price AS price, "
    "value.code AS code, value.code_v4 AS code_v4 FROM iceberg_scan(?))", [metadata]).fetchall())
assert types == {"qty": "BIGINT", "price": "DOUBLE", "code": "INTEGER", "code_v4": "VARCHAR"}, types

# Whatever the table did with the schema, consumers get the records back
# as they were produced.
assert consume_all(addr, topic, total) == produced
print("ok")
"#;

/// Python shared by the producers and readers of `matrix.shipments`.
const SHIPMENTS_PY: &str = r#"
import base64, json, sys
from datetime import datetime, timedelta, timezone
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2, wrappers_pb2
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import SerializationContext, MessageField
T = descriptor_pb2.FieldDescriptorProto
PER_VERSION = 4

def version_of(n):
    return n // PER_VERSION + 1

def add(m, name, number, ftype, type_name="", label=T.LABEL_OPTIONAL, oneof=None):
    field = m.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof

def shipment_file(version):
    """ship.Shipment as version 1-4 declares it: v2 adds a repeated string
    and a map<string, int64>, v3 a oneof and a Timestamp, v4 an Int64Value
    and a StringValue."""
    f = descriptor_pb2.FileDescriptorProto(name="ship/shipment.proto", package="ship", syntax="proto3")
    s = f.message_type.add(name="Shipment")
    add(s, "id", 1, T.TYPE_STRING)
    add(s, "carrier", 2, T.TYPE_STRING)
    if version >= 2:
        add(s, "tags", 3, T.TYPE_STRING, label=T.LABEL_REPEATED)
        entry = s.nested_type.add(name="CountsEntry")
        entry.options.map_entry = True
        add(entry, "key", 1, T.TYPE_STRING)
        add(entry, "value", 2, T.TYPE_INT64)
        add(s, "counts", 4, T.TYPE_MESSAGE, ".ship.Shipment.CountsEntry", label=T.LABEL_REPEATED)
    if version >= 3:
        f.dependency.append("google/protobuf/timestamp.proto")
        s.oneof_decl.add(name="destination")
        add(s, "locker", 5, T.TYPE_STRING, oneof=0)
        add(s, "store", 6, T.TYPE_INT64, oneof=0)
        add(s, "shipped_at", 7, T.TYPE_MESSAGE, ".google.protobuf.Timestamp")
    if version >= 4:
        f.dependency.append("google/protobuf/wrappers.proto")
        add(s, "weight_g", 8, T.TYPE_MESSAGE, ".google.protobuf.Int64Value")
        add(s, "signed_by", 9, T.TYPE_MESSAGE, ".google.protobuf.StringValue")
    return f

def shipment_class(version):
    pool = descriptor_pool.DescriptorPool()
    for well_known in (timestamp_pb2, wrappers_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(well_known.DESCRIPTOR.serialized_pb))
    pool.Add(shipment_file(version))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("ship.Shipment"))

# Version 4 as it is deployed to the registry, ahead of its producers.
V4_PROTO = """syntax = "proto3";
package ship;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
message Shipment {
  string id = 1;
  string carrier = 2;
  repeated string tags = 3;
  map<string, int64> counts = 4;
  oneof destination {
    string locker = 5;
    int64 store = 6;
  }
  google.protobuf.Timestamp shipped_at = 7;
  google.protobuf.Int64Value weight_g = 8;
  google.protobuf.StringValue signed_by = 9;
}
"""

# What shipment n holds. Some have no tags or no counts; store 0 is still
# the member that is set; one shipment has no shipped_at; a wrapper set to
# 0 or "" is a value, an unset one is not.
def carrier(n):
    return ["dhl", "ups"][n % 2]
def tags(n):
    return [f"t{n}-{i}" for i in range(n % 3)]
def counts(n):
    return {} if n % 4 == 0 else {"boxes": n, "pallets": -n}
def destination(n):
    """(member, value) of the oneof."""
    if n % 2 == 0:
        return ("locker", f"L-{n}")
    return ("store", 0 if n == 9 else 100 + n)
def shipped_at(n):
    """(seconds, nanos), or None when not set."""
    return None if n == 10 else (1_760_000_000 + n, 250_000_000)
def weight_g(n):
    return {12: None, 13: 0}.get(n, 1000 + n)
def signed_by(n):
    return {12: "", 13: None}.get(n, f"sig-{n}")

def produced_shipment(cls, n):
    v = version_of(n)
    m = cls(id=f"s-{n}", carrier=carrier(n))
    if v >= 2:
        m.tags.extend(tags(n))
        for k, c in counts(n).items():
            m.counts[k] = c
    if v >= 3:
        member, value = destination(n)
        setattr(m, member, value)
        assert m.WhichOneof("destination") == member
        if shipped_at(n) is not None:
            m.shipped_at.seconds, m.shipped_at.nanos = shipped_at(n)
    if v >= 4:
        if weight_g(n) is not None:
            m.weight_g.SetInParent()
            m.weight_g.value = weight_g(n)
        if signed_by(n) is not None:
            m.signed_by.SetInParent()
            m.signed_by.value = signed_by(n)
        assert m.HasField("weight_g") == (weight_g(n) is not None)
        assert m.HasField("signed_by") == (signed_by(n) is not None)
    return m

def expected_shipment(n):
    """The row a reader should get for shipment n: null for every field
    its version did not have yet."""
    v = version_of(n)
    member, value = destination(n) if v >= 3 else (None, None)
    ts = shipped_at(n) if v >= 3 else None
    return {
        "id": f"s-{n}",
        "carrier": carrier(n),
        "tags": tags(n) if v >= 2 else None,
        "counts": counts(n) if v >= 2 else None,
        "locker": value if member == "locker" else None,
        "store": value if member == "store" else None,
        "shipped_at": None if ts is None else
            datetime.fromtimestamp(ts[0], timezone.utc) + timedelta(microseconds=ts[1] // 1000),
        "weight_g": weight_g(n) if v >= 4 else None,
        "signed_by": signed_by(n) if v >= 4 else None,
    }
"#;

/// Produces the shipments of one version (argument 4): versions 1-3 with
/// auto-registration, version 4 registered from its `.proto` text first
/// and produced with `use.latest.version`. Prints the values (hex).
const PRODUCE_SHIPMENTS: &str = r#"
addr, registry, topic, version = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
subject = f"{topic}-value"
sr = SchemaRegistryClient({"url": registry})
ctx = SerializationContext(topic, MessageField.VALUE)
cls = shipment_class(version)
if version < 4:
    conf = {"use.deprecated.format": False}
else:
    schema_id = sr.register_schema(subject, Schema(V4_PROTO, "PROTOBUF"))
    latest = sr.get_latest_version(subject, fmt="serialized")
    assert latest.schema_id == schema_id and latest.version == 4, latest
    # The deployed text declares the message this producer builds.
    def shape(m):
        return [(f.name, f.number, f.type, f.label, f.type_name.lstrip("."),
                 f.oneof_index if f.HasField("oneof_index") else None) for f in m.field]
    registered = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(latest.schema.schema_str))
    assert shape(registered.message_type[0]) == shape(shipment_file(4).message_type[0]), registered
    conf = {"use.deprecated.format": False, "auto.register.schemas": False, "use.latest.version": True}
ser = ProtobufSerializer(cls, sr, conf)
p = Producer({"bootstrap.servers": addr, "acks": "all"})
failed, produced = [], []
for n in range(PER_VERSION * (version - 1), PER_VERSION * version):
    value = ser(produced_shipment(cls, n), ctx)
    assert int.from_bytes(value[1:5], "big") == sr.get_version(subject, version).schema_id, value[:6].hex()
    produced.append(value.hex())
    p.produce(topic, key=f"s-{n}".encode(), value=value, callback=lambda err, msg: err and failed.append(str(err)))
p.flush(30)
assert not failed, failed
versions = sr.get_versions(subject)
assert len(versions) == version, versions
print(json.dumps(produced))
"#;

/// Checks the shipments table with PyIceberg and DuckDB and the topic with
/// a consumer. Prints "ok".
const READ_SHIPMENTS: &str = r#"
from pyiceberg.types import ListType, LongType, MapType, StringType, TimestamptzType
addr, rest_uri, table_name, topic, produced = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
total = 4 * PER_VERSION
t, rows = load(rest_uri, table_name, total)

value = t.schema().find_field("value").field_type
types = {f.name: f.field_type for f in value.fields}
assert sorted(types) == sorted(["id", "carrier", "tags", "counts", "locker", "store", "shipped_at", "weight_g", "signed_by"]), t.schema()
assert isinstance(types["tags"], ListType) and isinstance(types["tags"].element_type, StringType), types["tags"]
assert isinstance(types["counts"], MapType), types["counts"]
assert isinstance(types["counts"].key_type, StringType) and isinstance(types["counts"].value_type, LongType), types["counts"]
# The oneof's members are ordinary optional columns.
assert isinstance(types["locker"], StringType) and isinstance(types["store"], LongType), types
assert isinstance(types["shipped_at"], TimestamptzType), types["shipped_at"]
# Wrappers are nullable scalars, not structs.
assert isinstance(types["weight_g"], LongType) and isinstance(types["signed_by"], StringType), types
assert not any(f.required for f in value.fields), value

for n, r in enumerate(rows):
    v = dict(r["value"])
    # Arrow maps come back as lists of (key, value) pairs.
    if v["counts"] is not None:
        v["counts"] = dict(v["counts"])
    assert r["kafka_key"] == f"s-{n}".encode(), (n, r["kafka_key"])
    assert v == expected_shipment(n), (n, v, expected_shipment(n))
    if version_of(n) >= 3:
        # Exactly one member of the oneof is set.
        assert (v["locker"] is None) != (v["store"] is None), (n, v)

con, metadata = duck(t)
got = con.execute(
    "SELECT value.id, value.tags, value.counts, value.locker, value.store, epoch_us(value.shipped_at), "
    "value.weight_g, value.signed_by FROM iceberg_scan(?) ORDER BY kafka_offset", [metadata]).fetchall()
want = []
for n in range(total):
    e = expected_shipment(n)
    ts = e["shipped_at"]
    want.append((e["id"], e["tags"], e["counts"], e["locker"], e["store"],
                 None if ts is None else int(ts.timestamp() * 1_000_000), e["weight_g"], e["signed_by"]))
assert got == want, [(n, g, w) for n, (g, w) in enumerate(zip(got, want)) if g != w] or got
types = dict(con.execute(
    "SELECT column_name, column_type FROM (DESCRIBE SELECT value.tags AS tags, value.counts AS counts, "
    "value.shipped_at AS shipped_at, value.weight_g AS weight_g, value.signed_by AS signed_by FROM iceberg_scan(?))",
    [metadata]).fetchall())
assert types == {"tags": "VARCHAR[]", "counts": "MAP(VARCHAR, BIGINT)", "shipped_at": "TIMESTAMP WITH TIME ZONE",
                 "weight_g": "BIGINT", "signed_by": "VARCHAR"}, types

assert consume_all(addr, topic, total) == produced
print("ok")
"#;

/// `matrix.orders` through four versions (and a late version 1 producer):
/// a renamed field keeps its column and its old values under the new
/// name; int32 → int64 and float → double widen the columns in place and
/// old values read as they were written; a new enum value reads as its
/// name; a nested message's new field is null for older rows; and int32 →
/// string, allowed only under compatibility NONE, keeps the old column
/// with its values and puts the strings in `code_v4`, with a warning and
/// a metric saying so. Old-version records produced after all that still
/// fill the old columns.
#[test]
fn orders_rename_widen_grow_and_change_type() {
    let broker = Broker::start_with(&["--table-commit-interval-ms", "200"]);
    broker.create_topic(ORDERS_TOPIC, 1, &[]);
    let Some(produced) = produce_orders(&broker, true) else {
        return;
    };
    check_orders(&broker, &produced, true);
}

/// `matrix.shipments` through four versions: a repeated string and a
/// map<string, int64> (null for rows written before they existed, empty
/// for rows that had none), a oneof whose two members are ordinary
/// optional columns with exactly one set per row (a member set to 0 is
/// set), a `google.protobuf.Timestamp` read as timestamptz, and wrapper
/// types read as nullable scalars (unset is NULL, 0 and "" are values).
/// Version 4 is deployed to the registry from its `.proto` text and its
/// producer serializes with `use.latest.version`.
#[test]
fn shipments_gain_lists_maps_oneofs_and_well_known_types() {
    let broker = Broker::start_with(&["--table-commit-interval-ms", "200"]);
    broker.create_topic(SHIPMENTS_TOPIC, 1, &[]);
    let Some(produced) = produce_shipments(&broker, true) else {
        return;
    };
    check_shipments(&broker, &produced);
}

/// The same two topics when the archiver was behind every version (it
/// was down while all of them were produced): the table is made in one
/// step with the records of all versions, and readers see what they see
/// when it followed each version — the incompatible change included.
#[test]
fn an_archiver_behind_every_version_makes_the_same_tables() {
    // An hour between table commits: nothing is archived while producing.
    let mut broker = Broker::start_with(&["--table-commit-interval-ms", "3600000"]);
    broker.create_topic(ORDERS_TOPIC, 1, &[]);
    broker.create_topic(SHIPMENTS_TOPIC, 1, &[]);
    let Some(orders) = produce_orders(&broker, false) else {
        return;
    };
    let shipments = produce_shipments(&broker, false).expect("python ran before");
    for table in [ORDERS_TABLE, SHIPMENTS_TABLE] {
        assert_eq!(
            table_rows(&broker, table).unwrap_or(0),
            0,
            "nothing should be archived yet"
        );
    }
    // Killed, so that shutdown does not archive either; the records are
    // in the log, acknowledged with acks=all.
    broker.kill9();
    broker.restart_with(&["--table-commit-interval-ms", "200"]);
    wait_for_table_rows(&broker, ORDERS_TABLE, ORDERS as u64);
    wait_for_table_rows(&broker, SHIPMENTS_TABLE, SHIPMENTS as u64);
    check_orders(&broker, &orders, false);
    check_shipments(&broker, &shipments);
}

/// Produces every step of `matrix.orders`; with `follow`, each step's
/// records reach the table before the next step starts. The values as
/// produced (hex); `None` without Python.
fn produce_orders(broker: &Broker, follow: bool) -> Option<Vec<String>> {
    let script = [ORDERS_PY, PRODUCE_ORDERS].concat();
    let mut produced: Vec<String> = Vec::new();
    for step in ["1", "2", "3", "4", "late"] {
        produced.extend(produce(broker, &script, ORDERS_TOPIC, step)?);
        if follow {
            wait_for_table_rows(broker, ORDERS_TABLE, produced.len() as u64);
        }
    }
    assert_eq!(produced.len(), ORDERS);
    Some(produced)
}

/// Produces the four versions of `matrix.shipments`, as `produce_orders`.
fn produce_shipments(broker: &Broker, follow: bool) -> Option<Vec<String>> {
    let script = [SHIPMENTS_PY, PRODUCE_SHIPMENTS].concat();
    let mut produced: Vec<String> = Vec::new();
    for version in ["1", "2", "3", "4"] {
        produced.extend(produce(broker, &script, SHIPMENTS_TOPIC, version)?);
        if follow {
            wait_for_table_rows(broker, SHIPMENTS_TABLE, produced.len() as u64);
        }
    }
    assert_eq!(produced.len(), SHIPMENTS);
    Some(produced)
}

/// Every reader of the orders table and topic. `followed`: the table
/// took each version in turn, so its schema history shows the rename and
/// the promotions.
fn check_orders(broker: &Broker, produced: &[String], followed: bool) {
    read_with_python(
        broker,
        &[ORDERS_PY, READERS_PY, READ_ORDERS].concat(),
        ORDERS_TOPIC,
        produced,
        followed,
    );

    let got = sql(
        broker,
        "SELECT value['id'] AS id, value['qty'] AS qty, value['price'] AS price, \
         value['status'] AS status, value['customer']['email'] AS email, \
         value['customer']['tier'] AS tier, value['remark'] AS remark, value['code'] AS code, \
         value['code_v4'] AS code_v4 FROM matrix_orders ORDER BY kafka_offset",
        &[
            "id", "qty", "price", "status", "email", "tier", "remark", "code", "code_v4",
        ],
    );
    let expected: Vec<Vec<String>> = (0..ORDERS).map(expected_order).collect();
    assert_eq!(got, expected);
    let got = sql(
        broker,
        "SELECT arrow_typeof(value['qty']) AS qty, arrow_typeof(value['price']) AS price, \
         arrow_typeof(value['code']) AS code, arrow_typeof(value['code_v4']) AS code_v4 \
         FROM matrix_orders LIMIT 1",
        &["qty", "price", "code", "code_v4"],
    );
    assert_eq!(got, [["Int64", "Float64", "Int32", "Utf8"]]);
    // The new enum value is a name to filter on, like the old ones.
    let got = sql(
        broker,
        "SELECT value['status'] AS status, count(*) AS n FROM matrix_orders \
         GROUP BY 1 ORDER BY 1",
        &["status", "n"],
    );
    let count = |s: &str| {
        (0..ORDERS)
            .filter(|n| expected_order(*n)[3] == s)
            .count()
            .to_string()
    };
    assert_eq!(
        got,
        [
            ["PAID".to_string(), count("PAID")],
            ["PENDING".to_string(), count("PENDING")],
            ["SHIPPED".to_string(), count("SHIPPED")],
        ]
    );
    assert_ne!(count("SHIPPED"), "0");

    // The one change Iceberg cannot express is reported, once.
    assert_eq!(
        metric(
            broker,
            "sluice_table_incompatible_changes_total",
            ORDERS_TOPIC
        ),
        1.0
    );
    let log = broker.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("incompatible schema change"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("shop.Order.code") && warned[0].contains("version 4"),
        "{}",
        warned[0]
    );
}

/// Every reader of the shipments table and topic.
fn check_shipments(broker: &Broker, produced: &[String]) {
    read_with_python(
        broker,
        &[SHIPMENTS_PY, READERS_PY, READ_SHIPMENTS].concat(),
        SHIPMENTS_TOPIC,
        produced,
        true,
    );

    let got = sql(
        broker,
        "SELECT value['id'] AS id, value['tags'] AS tags, value['counts'] AS counts, \
         value['locker'] AS locker, value['store'] AS store, \
         CAST(value['shipped_at'] AS BIGINT) AS shipped_us, value['weight_g'] AS weight_g, \
         value['signed_by'] AS signed_by FROM matrix_shipments ORDER BY kafka_offset",
        &[
            "id",
            "tags",
            "counts",
            "locker",
            "store",
            "shipped_us",
            "weight_g",
            "signed_by",
        ],
    );
    let expected: Vec<Vec<String>> = (0..SHIPMENTS).map(expected_shipment).collect();
    assert_eq!(got, expected);
    let got = sql(
        broker,
        "SELECT arrow_typeof(value['shipped_at']) AS shipped_at, \
         arrow_typeof(value['weight_g']) AS weight_g, arrow_typeof(value['signed_by']) AS signed_by \
         FROM matrix_shipments LIMIT 1",
        &["shipped_at", "weight_g", "signed_by"],
    );
    assert!(
        got[0][0].starts_with("Timestamp(") && !got[0][0].contains("None"),
        "shipped_at should be a timestamp with a time zone: {got:?}"
    );
    assert_eq!(got[0][1..], ["Int64", "Utf8"]);
    // A user's question across versions: rows with exactly one member of
    // the oneof are those of version 3 on; none has both.
    let got = sql(
        broker,
        "SELECT count(*) FILTER (WHERE (value['locker'] IS NULL) <> (value['store'] IS NULL)) AS one, \
         count(*) FILTER (WHERE value['locker'] IS NOT NULL AND value['store'] IS NOT NULL) AS two \
         FROM matrix_shipments",
        &["one", "two"],
    );
    assert_eq!(got, [[(2 * PER_VERSION).to_string(), "0".to_string()]]);

    // Every change here is one Iceberg expresses.
    assert_eq!(
        metric(
            broker,
            "sluice_table_incompatible_changes_total",
            SHIPMENTS_TOPIC
        ),
        0.0
    );
}

/// The version order `n` is written with (see `ORDERS_PY`).
fn order_version(n: usize) -> usize {
    if n >= 4 * PER_VERSION {
        1
    } else {
        n / PER_VERSION + 1
    }
}

/// Order `n` as `sluice sql` shows id, qty, price, status, email, tier,
/// remark, code and code_v4.
fn expected_order(n: usize) -> Vec<String> {
    let v = order_version(n);
    let null = || "NULL".to_string();
    vec![
        format!("o-{n}"),
        if v == 1 { n + 1 } else { 3_000_000_000 + n }.to_string(),
        if v < 3 {
            format!("{n}.5")
        } else {
            format!("{}.125", 10_000_000_000 + n)
        },
        if v == 1 {
            ["PENDING", "PAID"][n % 2]
        } else {
            ["PENDING", "PAID", "SHIPPED"][n % 3]
        }
        .to_string(),
        format!("c{n}@example.com"),
        match v {
            1 => null(),
            _ if n % 2 == 1 => "gold".into(),
            _ => "silver".into(),
        },
        format!("note-{n}"),
        if v < 4 { (700 + n).to_string() } else { null() },
        if v == 4 { format!("C-{n}") } else { null() },
    ]
}

/// Shipment `n` as `sluice sql` shows id, tags, counts, locker, store,
/// shipped_at (microseconds), weight_g and signed_by (see `SHIPMENTS_PY`).
fn expected_shipment(n: usize) -> Vec<String> {
    let v = n / PER_VERSION + 1;
    let null = || "NULL".to_string();
    let (tags, counts) = if v >= 2 {
        let tags: Vec<String> = (0..n % 3).map(|i| format!("t{n}-{i}")).collect();
        let counts = if n.is_multiple_of(4) {
            "{}".to_string()
        } else {
            format!("{{boxes: {n}, pallets: -{n}}}")
        };
        (format!("[{}]", tags.join(", ")), counts)
    } else {
        (null(), null())
    };
    let (locker, store) = match v {
        1 | 2 => (null(), null()),
        _ if n.is_multiple_of(2) => (format!("L-{n}"), null()),
        _ if n == 9 => (null(), "0".into()),
        _ => (null(), (100 + n).to_string()),
    };
    let shipped = if v < 3 || n == 10 {
        null()
    } else {
        ((1_760_000_000 + n as i64) * 1_000_000 + 250_000).to_string()
    };
    let (weight, signed) = match (v, n) {
        (1..=3, _) => (null(), null()),
        (_, 12) => (null(), String::new()),
        (_, 13) => ("0".into(), null()),
        _ => ((1000 + n).to_string(), format!("sig-{n}")),
    };
    vec![
        format!("s-{n}"),
        tags,
        counts,
        locker,
        store,
        shipped,
        weight,
        signed,
    ]
}

/// Runs a producer script for one step; the values it produced (hex).
/// `None` without Python.
fn produce(broker: &Broker, script: &str, topic: &str, step: &str) -> Option<Vec<String>> {
    let registry = format!("http://{}", broker.registry_addr());
    let out = run_python(
        script,
        &[&broker.bootstrap(), &registry, topic, step],
        Duration::from_secs(120),
    )?;
    let stdout = expect_success(&format!("producing {topic} step {step}"), &out);
    Some(serde_json::from_str(stdout.trim()).expect("hex values"))
}

/// Runs a reader script (PyIceberg, DuckDB, a consumer) over the topic's
/// table and records; it compares them with `produced`. `followed` goes
/// to the script (whether the table took each version in turn).
fn read_with_python(
    broker: &Broker,
    script: &str,
    topic: &str,
    produced: &[String],
    followed: bool,
) {
    let produced = serde_json::to_string(produced).unwrap();
    let rest = format!("http://{}", broker.http_addr());
    let table = format!("kafka.{}", topic.replace('.', "_"));
    let out = run_python(
        script,
        &[
            &broker.bootstrap(),
            &rest,
            &table,
            topic,
            &produced,
            if followed { "followed" } else { "behind" },
        ],
        Duration::from_secs(120),
    )
    .expect("python ran before");
    let stdout = expect_success(&format!("reading {topic}"), &out);
    assert!(stdout.contains("ok"), "{stdout}");
}

/// Runs `statement` with `sluice sql` and returns its rows, each cell as
/// printed (NULL for null). The columns must be `columns`; cells are cut
/// at the columns' positions in the header, so they may hold spaces.
fn sql(broker: &Broker, statement: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let out = sluice_cli(&["sql", statement, "--http", &broker.http_addr()]);
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        columns,
        "{out}"
    );
    let header: Vec<char> = header.chars().collect();
    let starts: Vec<usize> = (0..header.len())
        .filter(|&i| header[i] != ' ' && (i == 0 || header[i - 1] == ' '))
        .collect();
    lines
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            let cell = |from: usize, to: usize| -> String {
                let to = to.min(chars.len());
                chars
                    .get(from..to)
                    .map(|c| c.iter().collect::<String>().trim_end().to_string())
                    .unwrap_or_default()
            };
            starts
                .iter()
                .enumerate()
                .map(|(i, &from)| cell(from, starts.get(i + 1).copied().unwrap_or(usize::MAX)))
                .collect()
        })
        .collect()
}

/// The value of a per-topic counter on `/metrics` (0 when not reported).
fn metric(broker: &Broker, name: &str, topic: &str) -> f64 {
    let (status, body) = http(&broker.http_addr(), "GET", "/metrics", None).expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    let prefix = format!("{name}{{topic=\"{topic}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(0.0)
}
