//! A realistic nested Protobuf record (an order with an address, line items
//! and tags, about 1 KiB) for validation tests and the bench, encoded by hand
//! so the tests need no code generator.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};

/// The schema registered for order topics; the rules exercise every kind of
/// check the broker runs (formats, lengths, ranges, finiteness, items).
pub const ORDER_SCHEMA: &str = r#"syntax = "proto3";
package bench;
import "buf/validate/validate.proto";

message Address {
  string street = 1 [(buf.validate.field).string.min_len = 1];
  string city = 2 [(buf.validate.field).string.min_len = 1];
  string zip = 3 [(buf.validate.field).string.max_len = 10];
  string country = 4 [(buf.validate.field).string = {min_len: 2, max_len: 2}];
}

message Item {
  string sku = 1 [(buf.validate.field).string.min_len = 1];
  int32 quantity = 2 [(buf.validate.field).int32 = {gte: 1, lte: 1000}];
  double price = 3 [(buf.validate.field).double.finite = true];
  string description = 4 [(buf.validate.field).string.max_len = 200];
}

message Order {
  string id = 1 [(buf.validate.field).string.uuid = true];
  string email = 2 [(buf.validate.field).string.email = true];
  Address shipping = 3;
  repeated Item items = 4 [(buf.validate.field).repeated = {min_items: 1, max_items: 100}];
  map<string, string> tags = 5;
  int64 created_ms = 6;
  string note = 7 [(buf.validate.field).string.max_len = 2000];
}
"#;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    tag(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn str_field(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes_field(out, field, s.as_bytes());
}

/// Encodes order number `n`; `valid = false` breaks the email rule.
pub fn encode_order(n: u64, valid: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1100);
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n as u32,
        (n >> 8) as u16,
        n % 0xfff,
        (n * 7) % 0xfff,
        n * 31
    );
    str_field(&mut out, 1, &id);
    let email = if valid {
        format!("customer{n}@example.com")
    } else {
        format!("customer{n} at example")
    };
    str_field(&mut out, 2, &email);
    let mut addr = Vec::new();
    str_field(&mut addr, 1, &format!("{} Harbour Street", n % 500));
    str_field(&mut addr, 2, "Rotterdam");
    str_field(&mut addr, 3, "3011 AB");
    str_field(&mut addr, 4, "NL");
    bytes_field(&mut out, 3, &addr);
    for i in 0..8u64 {
        let mut item = Vec::new();
        str_field(&mut item, 1, &format!("SKU-{:06}", (n + i) % 1_000_000));
        tag(&mut item, 2, 0);
        varint(&mut item, 1 + (n + i) % 9);
        tag(&mut item, 3, 1);
        item.extend_from_slice(&(9.99 + i as f64).to_le_bytes());
        str_field(&mut item, 4, "A sturdy item with a short description");
        bytes_field(&mut out, 4, &item);
    }
    for (k, v) in [
        ("channel", "web"),
        ("campaign", "autumn"),
        ("priority", "normal"),
    ] {
        let mut entry = Vec::new();
        str_field(&mut entry, 1, k);
        str_field(&mut entry, 2, v);
        bytes_field(&mut out, 5, &entry);
    }
    tag(&mut out, 6, 0);
    varint(&mut out, 1_790_000_000_000 + n);
    str_field(&mut out, 7, &"please leave at the door. ".repeat(6));
    out
}

/// Confluent framing: magic byte, schema id, message indexes (`[2]`: the
/// third message of the file, `Order`), then the payload.
pub fn frame(schema_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 7);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    // Zigzag varints: one index (count 1 → 2), index 2 → 4.
    out.push(2);
    out.push(4);
    out.extend_from_slice(payload);
    out
}

/// A minimal HTTP/1.1 request without a client library; returns (status, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, body.to_string()))
}

/// Registers [`ORDER_SCHEMA`] under `subject` and returns its schema id.
pub fn register_order_schema(registry_addr: &str, subject: &str) -> anyhow::Result<u32> {
    register(registry_addr, subject, ORDER_SCHEMA)
}

/// The order schema with field policies: the email is for billing only,
/// the street and the note are PII (see [`GUARDED_POLICY_FILE`]).
pub fn guarded_order_schema() -> String {
    ORDER_SCHEMA
        .replace(
            "import \"buf/validate/validate.proto\";",
            "import \"buf/validate/validate.proto\";\nimport \"sluice/policy/v1/policy.proto\";",
        )
        .replace(
            "string email = 2 [(buf.validate.field).string.email = true];",
            "string email = 2 [(buf.validate.field).string.email = true, (sluice.policy.v1.field) = { purposes: [\"billing\"] }];",
        )
        .replace(
            "string street = 1 [(buf.validate.field).string.min_len = 1];",
            "string street = 1 [(buf.validate.field).string.min_len = 1, (sluice.policy.v1.field) = { sensitivity: \"pii\" }];",
        )
        .replace(
            "string note = 7 [(buf.validate.field).string.max_len = 2000];",
            "string note = 7 [(buf.validate.field).string.max_len = 2000, (sluice.policy.v1.field) = { sensitivity: \"pii\" }];",
        )
}

/// Purposes for [`guarded_order_schema`]: `billing` sees everything,
/// `analytics` gets PII and the email hashed, undeclared readers lose them.
pub const GUARDED_POLICY_FILE: &str = r#"purposes = ["billing", "analytics"]
[actions]
analytics = "hash"
[sensitivity]
pii = ["billing"]
"#;

pub fn register_guarded_order_schema(registry_addr: &str, subject: &str) -> anyhow::Result<u32> {
    register(registry_addr, subject, &guarded_order_schema())
}

fn register(registry_addr: &str, subject: &str, schema: &str) -> anyhow::Result<u32> {
    let body = serde_json::json!({
        "schema": schema,
        "schemaType": "PROTOBUF",
        "references": [{"name": "buf/validate/validate.proto",
                        "subject": "buf/validate/validate.proto", "version": 1},
                       {"name": "sluice/policy/v1/policy.proto",
                        "subject": "sluice/policy/v1/policy.proto", "version": 1}],
    })
    .to_string();
    let (status, text) = http(
        registry_addr,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(&body),
    )?;
    if status != 200 {
        bail!("registering the order schema failed with HTTP {status}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).context("registry answer")?;
    v["id"]
        .as_u64()
        .map(|id| id as u32)
        .context("no id in the registry answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guarded_schema_carries_its_policies() {
        let schema =
            sluice_proto::CompiledSchema::compile(&guarded_order_schema(), &Default::default())
                .unwrap();
        let policy = |message: &str, field: &str| {
            let m = schema.pool().get_message_by_name(message).unwrap();
            sluice_proto::field_policy(&m.get_field_by_name(field).unwrap())
        };
        assert_eq!(
            policy("bench.Order", "email").unwrap().purposes,
            ["billing"]
        );
        assert_eq!(
            policy("bench.Address", "street").unwrap().sensitivity,
            "pii"
        );
        assert_eq!(policy("bench.Order", "note").unwrap().sensitivity, "pii");
        assert!(policy("bench.Order", "id").is_none());
    }
}
