//! Removing, masking or hashing the fields of a record that a reader may
//! not see, straight on the protobuf wire encoding.
//!
//! A [`Redaction`] is prepared once per (message type, reader): for every
//! message type reachable from the record's type it lists what happens to
//! each field number. Applying it walks the encoded record once and copies
//! every field it may keep byte for byte, so the result is a valid encoding
//! of the *same* message type (a dropped field reads as absent, a masked
//! or hashed string as another string) and parses with the original schema.
//!
//! Fields the schema does not describe (unknown fields) are copied as they
//! are: policy lives in the schema, and a field without a schema has none.

use std::collections::HashMap;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use sha2::{Digest as _, Sha256};

use crate::ProtoError;

/// What a reader gets instead of a field it may not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Hidden {
    /// The field is left out (it reads as absent / its default).
    #[default]
    Drop,
    /// Strings become `****`, bytes become empty. Other types are dropped.
    Mask,
    /// Strings become the lowercase hex SHA-256 of their UTF-8 bytes, bytes
    /// fields the raw 32-byte digest, so equal values still join. Other
    /// types are dropped.
    Hash,
}

impl Hidden {
    pub fn as_str(self) -> &'static str {
        match self {
            Hidden::Drop => "drop",
            Hidden::Mask => "mask",
            Hidden::Hash => "hash",
        }
    }
}

impl std::str::FromStr for Hidden {
    type Err = String;
    fn from_str(s: &str) -> Result<Hidden, String> {
        match s {
            "drop" => Ok(Hidden::Drop),
            "mask" => Ok(Hidden::Mask),
            "hash" => Ok(Hidden::Hash),
            other => Err(format!(
                "unknown action '{other}' for hidden fields: expected drop, mask or hash"
            )),
        }
    }
}

/// The string a masked string field carries.
pub const MASK: &str = "****";

/// What happens to one field number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Drop,
    MaskString,
    MaskBytes,
    HashString,
    HashBytes,
    /// The field is a message whose own fields need redaction: the
    /// index of that message's plan.
    Recurse(usize),
}

/// The fields of one message type that are not copied as they are,
/// sorted by field number.
#[derive(Debug, Clone, Default)]
struct Plan {
    fields: Vec<(u32, Action)>,
}

impl Plan {
    fn action(&self, number: u32) -> Option<Action> {
        // Plans are short (the restricted fields only): a linear scan beats
        // a hash lookup.
        self.fields
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, a)| *a)
    }
}

/// A prepared redaction of one message type for one reader.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// Plan 0 is the record's own message type.
    plans: Vec<Plan>,
}

/// Deeper nesting than this is refused rather than followed (the decoder's
/// own recursion limit is 100).
const MAX_DEPTH: usize = 100;

impl Redaction {
    /// Prepares the redaction of `message` for a reader to whom `hidden`
    /// answers, per field, `None` (may see it) or what to do instead.
    /// Returns `None` when the reader may see every field of every message
    /// reachable from `message`, so records pass through untouched.
    pub fn prepare(
        message: &MessageDescriptor,
        hidden: &dyn Fn(&FieldDescriptor) -> Option<Hidden>,
    ) -> Option<Redaction> {
        let mut builder = Builder {
            hidden,
            index: HashMap::new(),
            plans: Vec::new(),
        };
        builder.build(message);
        let mut plans = builder.plans;
        // A message plan matters if it changes a field itself or holds a
        // message whose plan matters; recursive types make this a fixed
        // point rather than a single pass.
        let mut matters: Vec<bool> = plans
            .iter()
            .map(|p| {
                p.fields
                    .iter()
                    .any(|(_, a)| !matches!(a, Action::Recurse(_)))
            })
            .collect();
        loop {
            let mut changed = false;
            for (i, plan) in plans.iter().enumerate() {
                if matters[i] {
                    continue;
                }
                if plan
                    .fields
                    .iter()
                    .any(|(_, a)| matches!(a, Action::Recurse(j) if matters[*j]))
                {
                    matters[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if !matters[0] {
            return None;
        }
        for plan in &mut plans {
            plan.fields
                .retain(|(_, a)| !matches!(a, Action::Recurse(j) if !matters[*j]));
        }
        Some(Redaction { plans })
    }

    /// Appends the redacted encoding of `payload` (an encoded message of the
    /// prepared type) to `out`.
    pub fn apply(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), ProtoError> {
        out.reserve(payload.len());
        self.apply_plan(0, payload, out, 0)
    }

    fn apply_plan(
        &self,
        plan: usize,
        mut buf: &[u8],
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), ProtoError> {
        if depth > MAX_DEPTH {
            return Err(bad("message nesting is too deep"));
        }
        let plan = &self.plans[plan];
        while !buf.is_empty() {
            let start = buf;
            let tag = read_varint(&mut buf)?;
            let number = u32::try_from(tag >> 3).map_err(|_| bad("field number out of range"))?;
            let wire_type = (tag & 7) as u8;
            if number == 0 {
                return Err(bad("field number 0"));
            }
            let tag_bytes = &start[..start.len() - buf.len()];
            let action = plan.action(number);
            // Length-delimited values are handled here; every other wire
            // type is skipped over to find the field's extent.
            if wire_type == WT_LEN {
                let len = read_varint(&mut buf)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|l| *l <= buf.len())
                    .ok_or_else(|| bad("length runs past the end of the message"))?;
                let (value, rest) = buf.split_at(len);
                buf = rest;
                match action {
                    None => out.extend_from_slice(&start[..start.len() - buf.len()]),
                    Some(Action::Drop) => {}
                    Some(Action::MaskString) => put_len(out, tag_bytes, MASK.as_bytes()),
                    Some(Action::MaskBytes) => put_len(out, tag_bytes, &[]),
                    Some(Action::HashString) => {
                        let digest = Sha256::digest(value);
                        put_len(out, tag_bytes, hex(&digest).as_bytes());
                    }
                    Some(Action::HashBytes) => {
                        let digest = Sha256::digest(value);
                        put_len(out, tag_bytes, &digest);
                    }
                    Some(Action::Recurse(sub)) => {
                        let mut inner = Vec::with_capacity(value.len());
                        self.apply_plan(sub, value, &mut inner, depth + 1)?;
                        put_len(out, tag_bytes, &inner);
                    }
                }
                continue;
            }
            skip_value(wire_type, number, &mut buf, depth)?;
            match action {
                // A field the schema declares as a message or string but
                // that arrives with another wire type cannot be redacted
                // in place; a restricted one is left out, a visible one
                // copied.
                None | Some(Action::Recurse(_)) => {
                    out.extend_from_slice(&start[..start.len() - buf.len()])
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

struct Builder<'a> {
    hidden: &'a dyn Fn(&FieldDescriptor) -> Option<Hidden>,
    index: HashMap<String, usize>,
    plans: Vec<Plan>,
}

impl Builder<'_> {
    fn build(&mut self, message: &MessageDescriptor) -> usize {
        if let Some(i) = self.index.get(message.full_name()) {
            return *i;
        }
        let i = self.plans.len();
        self.plans.push(Plan::default());
        self.index.insert(message.full_name().to_owned(), i);
        let mut fields = Vec::new();
        for field in message.fields() {
            let action = match (self.hidden)(&field) {
                Some(how) => Some(hidden_action(&field, how)),
                None => match field.kind() {
                    Kind::Message(sub) if !field.is_group() => {
                        Some(Action::Recurse(self.build(&sub)))
                    }
                    _ => None,
                },
            };
            if let Some(a) = action {
                fields.push((field.number(), a));
            }
        }
        fields.sort_by_key(|(n, _)| *n);
        self.plans[i].fields = fields;
        i
    }
}

fn hidden_action(field: &FieldDescriptor, how: Hidden) -> Action {
    // A map's entries are messages: masking or hashing applies to values,
    // so a hidden map is always left out.
    if field.is_map() {
        return Action::Drop;
    }
    match (how, field.kind()) {
        (Hidden::Mask, Kind::String) => Action::MaskString,
        (Hidden::Mask, Kind::Bytes) => Action::MaskBytes,
        (Hidden::Hash, Kind::String) => Action::HashString,
        (Hidden::Hash, Kind::Bytes) => Action::HashBytes,
        _ => Action::Drop,
    }
}

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_START_GROUP: u8 = 3;
const WT_END_GROUP: u8 = 4;
const WT_I32: u8 = 5;

fn bad(why: &str) -> ProtoError {
    ProtoError::Malformed(why.to_owned())
}

fn read_varint(buf: &mut &[u8]) -> Result<u64, ProtoError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(bad("truncated varint"));
        };
        *buf = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(bad("varint longer than 10 bytes"))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(out: &mut Vec<u8>, tag: &[u8], value: &[u8]) {
    out.extend_from_slice(tag);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn take(buf: &mut &[u8], n: usize) -> Result<(), ProtoError> {
    if buf.len() < n {
        return Err(bad("value runs past the end of the message"));
    }
    *buf = &buf[n..];
    Ok(())
}

/// Skips one value of `wire_type` (not length-delimited), groups included.
fn skip_value(wire_type: u8, number: u32, buf: &mut &[u8], depth: usize) -> Result<(), ProtoError> {
    match wire_type {
        WT_VARINT => read_varint(buf).map(|_| ()),
        WT_I64 => take(buf, 8),
        WT_I32 => take(buf, 4),
        WT_LEN => {
            let len = read_varint(buf)?;
            let len = usize::try_from(len).map_err(|_| bad("length out of range"))?;
            take(buf, len)
        }
        WT_START_GROUP => {
            if depth > MAX_DEPTH {
                return Err(bad("group nesting is too deep"));
            }
            loop {
                let tag = read_varint(buf)?;
                let inner =
                    u32::try_from(tag >> 3).map_err(|_| bad("field number out of range"))?;
                let wt = (tag & 7) as u8;
                if wt == WT_END_GROUP {
                    if inner != number {
                        return Err(bad("group ends with another field's number"));
                    }
                    return Ok(());
                }
                skip_value(wt, inner, buf, depth + 1)?;
            }
        }
        WT_END_GROUP => Err(bad("group end without a start")),
        _ => Err(bad("unknown wire type")),
    }
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message as _;
    use prost_reflect::{DynamicMessage, MapKey, ReflectMessage as _, Value};

    use super::*;
    use crate::{CompiledSchema, field_policy};

    const SCHEMA: &str = r#"
        syntax = "proto3";
        package shop;
        import "sluice/policy/v1/policy.proto";
        message Customer {
          string id = 1;
          string email = 2 [(sluice.policy.v1.field) = { purposes: ["billing"] }];
          string name = 3 [(sluice.policy.v1.field) = { sensitivity: "pii" }];
          Address address = 4;
          repeated Address previous = 5;
          map<string, Address> by_label = 6;
          bytes avatar = 7 [(sluice.policy.v1.field) = { sensitivity: "pii" }];
          int64 card = 8 [(sluice.policy.v1.field) = { purposes: ["billing"] }];
          Customer referrer = 9;
          repeated string tags = 10 [(sluice.policy.v1.field) = { purposes: ["billing"] }];
        }
        message Address {
          string city = 1;
          string street = 2 [(sluice.policy.v1.field) = { sensitivity: "pii" }];
        }
    "#;

    fn schema() -> CompiledSchema {
        CompiledSchema::compile(SCHEMA, &BTreeMap::new()).unwrap()
    }

    /// The test reader: may see unrestricted fields and, when `billing`,
    /// fields for billing and pii fields.
    fn reader(billing: bool, how: Hidden) -> impl Fn(&FieldDescriptor) -> Option<Hidden> {
        move |f| {
            let p = field_policy(f)?;
            let allowed = (p.purposes.is_empty()
                || (billing && p.purposes.iter().any(|x| x == "billing")))
                && (p.sensitivity.is_empty() || billing);
            (!allowed).then_some(how)
        }
    }

    fn address(schema: &CompiledSchema, city: &str, street: &str) -> Value {
        let mut a = DynamicMessage::new(schema.pool().get_message_by_name("shop.Address").unwrap());
        a.set_field_by_name("city", Value::String(city.into()));
        a.set_field_by_name("street", Value::String(street.into()));
        Value::Message(a)
    }

    fn customer(schema: &CompiledSchema) -> DynamicMessage {
        let desc = schema.pool().get_message_by_name("shop.Customer").unwrap();
        let mut c = DynamicMessage::new(desc.clone());
        c.set_field_by_name("id", Value::String("c-1".into()));
        c.set_field_by_name("email", Value::String("ada@example.com".into()));
        c.set_field_by_name("name", Value::String("Ada".into()));
        c.set_field_by_name("address", address(schema, "Paris", "1 rue X"));
        c.set_field_by_name(
            "previous",
            Value::List(vec![
                address(schema, "Lyon", "2 rue Y"),
                address(schema, "Nice", "3 rue Z"),
            ]),
        );
        let mut map = std::collections::HashMap::new();
        map.insert(
            MapKey::String("home".into()),
            address(schema, "Metz", "4 rue W"),
        );
        c.set_field_by_name("by_label", Value::Map(map));
        c.set_field_by_name("avatar", Value::Bytes(vec![1, 2, 3].into()));
        c.set_field_by_name("card", Value::I64(4111));
        c.set_field_by_name("tags", Value::List(vec![Value::String("vip".into())]));
        let mut referrer = DynamicMessage::new(desc);
        referrer.set_field_by_name("id", Value::String("c-0".into()));
        referrer.set_field_by_name("email", Value::String("bob@example.com".into()));
        c.set_field_by_name("referrer", Value::Message(referrer));
        c
    }

    fn redact(r: &Redaction, m: &DynamicMessage) -> DynamicMessage {
        let mut out = Vec::new();
        r.apply(&m.encode_to_vec(), &mut out).unwrap();
        DynamicMessage::decode(m.descriptor(), out.as_slice())
            .expect("still parses with the schema")
    }

    fn text(m: &DynamicMessage, path: &[&str]) -> String {
        let mut v = Value::Message(m.clone());
        for p in path {
            v = v
                .as_message()
                .unwrap()
                .get_field_by_name(p)
                .unwrap()
                .into_owned();
        }
        v.as_str().unwrap().to_owned()
    }

    #[test]
    fn a_reader_allowed_everything_needs_no_redaction() {
        let s = schema();
        let desc = s.pool().get_message_by_name("shop.Customer").unwrap();
        assert!(Redaction::prepare(&desc, &reader(true, Hidden::Drop)).is_none());
    }

    #[test]
    fn drop_removes_hidden_fields_at_every_depth() {
        let s = schema();
        let desc = s.pool().get_message_by_name("shop.Customer").unwrap();
        let r = Redaction::prepare(&desc, &reader(false, Hidden::Drop)).unwrap();
        let out = redact(&r, &customer(&s));
        assert_eq!(text(&out, &["id"]), "c-1");
        assert_eq!(text(&out, &["email"]), "");
        assert_eq!(text(&out, &["name"]), "");
        assert_eq!(text(&out, &["address", "city"]), "Paris");
        assert_eq!(text(&out, &["address", "street"]), "");
        let previous = out.get_field_by_name("previous").unwrap();
        let previous = previous.as_list().unwrap();
        assert_eq!(previous.len(), 2);
        for p in previous {
            assert_eq!(
                p.as_message()
                    .unwrap()
                    .get_field_by_name("street")
                    .unwrap()
                    .as_str(),
                Some("")
            );
            assert_ne!(
                p.as_message()
                    .unwrap()
                    .get_field_by_name("city")
                    .unwrap()
                    .as_str(),
                Some("")
            );
        }
        let map = out.get_field_by_name("by_label").unwrap();
        let home = &map.as_map().unwrap()[&MapKey::String("home".into())];
        assert_eq!(
            home.as_message()
                .unwrap()
                .get_field_by_name("city")
                .unwrap()
                .as_str(),
            Some("Metz")
        );
        assert_eq!(
            home.as_message()
                .unwrap()
                .get_field_by_name("street")
                .unwrap()
                .as_str(),
            Some("")
        );
        assert!(!out.has_field_by_name("avatar"));
        assert!(!out.has_field_by_name("card"));
        assert!(
            out.get_field_by_name("tags")
                .unwrap()
                .as_list()
                .unwrap()
                .is_empty()
        );
        // Recursive types are followed.
        assert_eq!(text(&out, &["referrer", "id"]), "c-0");
        assert_eq!(text(&out, &["referrer", "email"]), "");
    }

    #[test]
    fn mask_and_hash_keep_strings_and_drop_what_cannot_hold_them() {
        let s = schema();
        let desc = s.pool().get_message_by_name("shop.Customer").unwrap();
        let masked = redact(
            &Redaction::prepare(&desc, &reader(false, Hidden::Mask)).unwrap(),
            &customer(&s),
        );
        assert_eq!(text(&masked, &["email"]), MASK);
        assert_eq!(text(&masked, &["address", "street"]), MASK);
        assert!(!masked.has_field_by_name("card"));
        assert_eq!(
            masked
                .get_field_by_name("avatar")
                .unwrap()
                .as_bytes()
                .unwrap()
                .len(),
            0
        );

        let hashed = redact(
            &Redaction::prepare(&desc, &reader(false, Hidden::Hash)).unwrap(),
            &customer(&s),
        );
        let expected = hex(&Sha256::digest(b"ada@example.com"));
        assert_eq!(text(&hashed, &["email"]), expected);
        assert_eq!(expected.len(), 64);
        assert_eq!(
            hashed
                .get_field_by_name("avatar")
                .unwrap()
                .as_bytes()
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            hashed.get_field_by_name("tags").unwrap().as_list().unwrap()[0]
                .as_str()
                .unwrap(),
            hex(&Sha256::digest(b"vip"))
        );
    }

    #[test]
    fn unknown_fields_and_untouched_messages_are_copied_byte_for_byte() {
        let s = schema();
        let desc = s.pool().get_message_by_name("shop.Customer").unwrap();
        let r = Redaction::prepare(&desc, &reader(false, Hidden::Drop)).unwrap();
        let mut c = DynamicMessage::new(desc.clone());
        c.set_field_by_name("id", Value::String("c-9".into()));
        let mut bytes = c.encode_to_vec();
        // Field 99, varint 5: not in the schema.
        bytes.extend_from_slice(&[0x98, 0x06, 0x05]);
        let mut out = Vec::new();
        r.apply(&bytes, &mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let s = schema();
        let desc = s.pool().get_message_by_name("shop.Customer").unwrap();
        let r = Redaction::prepare(&desc, &reader(false, Hidden::Drop)).unwrap();
        let good = customer(&s).encode_to_vec();
        for cut in 0..good.len() {
            let mut out = Vec::new();
            let _ = r.apply(&good[..cut], &mut out);
        }
        for bad in [
            &[0x12, 0x7f][..],
            &[0xff; 11],
            &[0x00],
            &[0x0b, 0x01],
            &[0x0c],
            &[0x0f],
        ] {
            let mut out = Vec::new();
            assert!(r.apply(bad, &mut out).is_err(), "{bad:?}");
        }
    }
}
