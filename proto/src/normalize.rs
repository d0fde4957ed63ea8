//! Canonical text for a compiled schema.
//!
//! Two schemas that mean the same thing must get the same registry id no
//! matter how they were written: whitespace, comments, the order fields or
//! options were declared in, whether types were named relatively or fully,
//! or whether the schema arrived as `.proto` text or as a serialized
//! descriptor. The canonical form is printed from the compiled descriptor
//! (so all of those differences are already gone) as `.proto` text with a
//! fixed layout:
//!
//! * type references are fully qualified (`.pkg.Msg`);
//! * fields are printed in field-number order, oneof members inside their
//!   oneof; options in field-number order;
//! * imports are sorted;
//! * messages, enums, enum values and services keep their declared order,
//!   because that order carries meaning (message indexes in the Confluent
//!   framing, the default enum value).
//!
//! The output is itself a valid schema that compiles to the same
//! descriptor, and normalising it again gives the same text.

use std::fmt::Write as _;

use prost_reflect::prost_types::field_descriptor_proto::{Label, Type};
use prost_reflect::prost_types::{FieldDescriptorProto, FileDescriptorProto};
use prost_reflect::{
    DynamicMessage, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, FileDescriptor, Kind,
    MessageDescriptor, ServiceDescriptor, Value,
};

/// Highest field number; printed as `max` in ranges.
const MAX_FIELD_NUMBER: u32 = 536_870_911;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Proto2,
    Proto3,
    Editions,
}

/// Prints the canonical `.proto` text of `file`; see the module docs.
pub fn canonical_text(file: &FileDescriptor) -> String {
    let raw = file.file_descriptor_proto();
    let syntax = match raw.syntax() {
        "proto3" => Syntax::Proto3,
        "editions" => Syntax::Editions,
        _ => Syntax::Proto2,
    };
    let mut p = Printer {
        out: String::new(),
        indent: 0,
        syntax,
    };
    p.file(file, raw);
    p.out
}

struct Printer {
    out: String,
    indent: usize,
    syntax: Syntax,
}

impl Printer {
    fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn open(&mut self, text: &str) {
        self.line(&format!("{text} {{"));
        self.indent += 1;
    }

    fn close(&mut self) {
        self.indent = self.indent.saturating_sub(1);
        self.line("}");
    }

    fn file(&mut self, file: &FileDescriptor, raw: &FileDescriptorProto) {
        match self.syntax {
            Syntax::Proto2 => self.line("syntax = \"proto2\";"),
            Syntax::Proto3 => self.line("syntax = \"proto3\";"),
            // protox parses no edition other than 2023.
            Syntax::Editions => self.line("edition = \"2023\";"),
        }
        if !raw.package().is_empty() {
            self.line(&format!("package {};", raw.package()));
        }
        let mut imports: Vec<(String, &str)> = raw
            .dependency
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let i = i as i32;
                let modifier = if raw.public_dependency.contains(&i) {
                    "public "
                } else if raw.weak_dependency.contains(&i) {
                    "weak "
                } else {
                    ""
                };
                (name.clone(), modifier)
            })
            .collect();
        imports.sort();
        for (name, modifier) in imports {
            self.line(&format!("import {modifier}{};", quote(name.as_bytes())));
        }
        self.option_statements(&file.options());
        for message in file.messages() {
            self.message(&message);
        }
        for e in file.enums() {
            self.enumeration(&e);
        }
        for extension in file.extensions() {
            self.extension_block(&extension);
        }
        for service in file.services() {
            self.service(&service);
        }
    }

    fn option_statements(&mut self, options: &DynamicMessage) {
        for (name, value) in option_entries(options) {
            self.line(&format!("option {name} = {value};"));
        }
    }

    fn message(&mut self, message: &MessageDescriptor) {
        self.open(&format!("message {}", message.name()));
        self.message_body(message);
        self.close();
    }

    fn message_body(&mut self, message: &MessageDescriptor) {
        self.option_statements(&message.options());
        let real_oneof = |f: &FieldDescriptor| {
            f.containing_oneof().is_some() && !f.field_descriptor_proto().proto3_optional()
        };
        let mut fields: Vec<FieldDescriptor> =
            message.fields().filter(|f| !real_oneof(f)).collect();
        fields.sort_by_key(FieldDescriptor::number);
        for field in &fields {
            self.field(field, false);
        }
        for oneof in message.oneofs().filter(|o| !o.is_synthetic()) {
            self.open(&format!("oneof {}", oneof.name()));
            self.option_statements(&oneof.options());
            let mut members: Vec<FieldDescriptor> = oneof.fields().collect();
            members.sort_by_key(FieldDescriptor::number);
            for field in &members {
                self.field(field, true);
            }
            self.close();
        }
        let inline: Vec<String> = message
            .fields()
            .filter(|f| self.is_inline_group(f.field_descriptor_proto()) || f.is_map())
            .filter_map(|f| f.kind().as_message().map(|m| m.full_name().to_owned()))
            .collect();
        for child in message.child_messages() {
            if !child.is_map_entry() && !inline.iter().any(|n| n == child.full_name()) {
                self.message(&child);
            }
        }
        for e in message.child_enums() {
            self.enumeration(&e);
        }
        for extension in message.child_extensions() {
            self.extension_block(&extension);
        }
        let raw = message.descriptor_proto();
        let mut reserved: Vec<(i32, i32)> = raw
            .reserved_range
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect();
        reserved.sort();
        if !reserved.is_empty() {
            let ranges: Vec<String> = reserved
                .iter()
                .map(|(start, end)| exclusive_range(*start, *end))
                .collect();
            self.line(&format!("reserved {};", ranges.join(", ")));
        }
        self.reserved_names(raw.reserved_name.clone());
        let mut extension_ranges: Vec<(i32, i32)> = raw
            .extension_range
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect();
        extension_ranges.sort();
        if !extension_ranges.is_empty() {
            let ranges: Vec<String> = extension_ranges
                .iter()
                .map(|(start, end)| exclusive_range(*start, *end))
                .collect();
            self.line(&format!("extensions {};", ranges.join(", ")));
        }
    }

    fn reserved_names(&mut self, mut names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        names.sort();
        let names: Vec<String> = names
            .iter()
            .map(|n| {
                if self.syntax == Syntax::Editions {
                    n.clone()
                } else {
                    quote(n.as_bytes())
                }
            })
            .collect();
        self.line(&format!("reserved {};", names.join(", ")));
    }

    fn is_inline_group(&self, raw: &FieldDescriptorProto) -> bool {
        self.syntax == Syntax::Proto2 && raw.r#type() == Type::Group
    }

    fn field(&mut self, field: &FieldDescriptor, in_oneof: bool) {
        let raw = field.field_descriptor_proto();
        let label = if field.is_map() || in_oneof {
            ""
        } else {
            self.label(raw)
        };
        let ty = if field.is_map() {
            match field.kind().as_message() {
                Some(entry) => format!(
                    "map<{}, {}>",
                    type_name(&entry.map_entry_key_field()),
                    type_name(&entry.map_entry_value_field())
                ),
                None => type_name(field),
            }
        } else {
            type_name(field)
        };
        let mut attrs = Vec::new();
        if let Some(default) = default_literal(raw) {
            attrs.push(format!("default = {default}"));
        }
        if raw
            .json_name
            .as_deref()
            .is_some_and(|j| j != default_json_name(field.name()))
        {
            attrs.push(format!("json_name = {}", quote(raw.json_name().as_bytes())));
        }
        attrs.extend(
            option_entries(&field.options())
                .into_iter()
                .map(|(n, v)| format!("{n} = {v}")),
        );
        let attrs = bracket(&attrs);
        if self.is_inline_group(raw)
            && let Some(group) = field.kind().as_message()
        {
            let group = group.clone();
            self.open(&format!(
                "{label}group {} = {}{attrs}",
                group.name(),
                field.number()
            ));
            self.message_body(&group);
            self.close();
            return;
        }
        self.line(&format!(
            "{label}{ty} {} = {}{attrs};",
            field.name(),
            field.number()
        ));
    }

    fn label(&self, raw: &FieldDescriptorProto) -> &'static str {
        match (raw.label(), self.syntax) {
            (Label::Repeated, _) => "repeated ",
            (_, Syntax::Editions) => "",
            (Label::Required, _) => "required ",
            (Label::Optional, Syntax::Proto2) => "optional ",
            (Label::Optional, _) if raw.proto3_optional() => "optional ",
            _ => "",
        }
    }

    fn extension_block(&mut self, extension: &ExtensionDescriptor) {
        let raw = extension.field_descriptor_proto();
        self.open(&format!(
            "extend .{}",
            extension.containing_message().full_name()
        ));
        let label = self.label(raw);
        let ty = kind_name(&extension.kind(), raw);
        let mut attrs = Vec::new();
        if let Some(default) = default_literal(raw) {
            attrs.push(format!("default = {default}"));
        }
        attrs.extend(
            option_entries(&extension.options())
                .into_iter()
                .map(|(n, v)| format!("{n} = {v}")),
        );
        self.line(&format!(
            "{label}{ty} {} = {}{};",
            extension.name(),
            extension.number(),
            bracket(&attrs)
        ));
        self.close();
    }

    fn enumeration(&mut self, e: &EnumDescriptor) {
        self.open(&format!("enum {}", e.name()));
        self.option_statements(&e.options());
        // Declared order, from the raw descriptor: the reflection API
        // orders aliases differently, and the first value is the default.
        let raw = e.enum_descriptor_proto();
        for raw_value in &raw.value {
            let attrs: Vec<String> = e
                .get_value_by_name(raw_value.name())
                .map(|value| option_entries(&value.options()))
                .unwrap_or_default()
                .into_iter()
                .map(|(n, v)| format!("{n} = {v}"))
                .collect();
            self.line(&format!(
                "{} = {}{};",
                raw_value.name(),
                raw_value.number(),
                bracket(&attrs)
            ));
        }
        let mut reserved: Vec<(i32, i32)> = raw
            .reserved_range
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect();
        reserved.sort();
        if !reserved.is_empty() {
            // Enum ranges are inclusive at both ends.
            let ranges: Vec<String> = reserved
                .iter()
                .map(|(start, end)| {
                    if start == end {
                        start.to_string()
                    } else if *end == i32::MAX {
                        format!("{start} to max")
                    } else {
                        format!("{start} to {end}")
                    }
                })
                .collect();
            self.line(&format!("reserved {};", ranges.join(", ")));
        }
        self.reserved_names(raw.reserved_name.clone());
        self.close();
    }

    fn service(&mut self, service: &ServiceDescriptor) {
        self.open(&format!("service {}", service.name()));
        self.option_statements(&service.options());
        for method in service.methods() {
            let stream = |yes: bool| if yes { "stream " } else { "" };
            let head = format!(
                "rpc {} ({}.{}) returns ({}.{})",
                method.name(),
                stream(method.is_client_streaming()),
                method.input().full_name(),
                stream(method.is_server_streaming()),
                method.output().full_name()
            );
            let options = option_entries(&method.options());
            if options.is_empty() {
                self.line(&format!("{head};"));
            } else {
                self.open(&head);
                for (name, value) in options {
                    self.line(&format!("option {name} = {value};"));
                }
                self.close();
            }
        }
        self.close();
    }
}

fn bracket(attrs: &[String]) -> String {
    if attrs.is_empty() {
        String::new()
    } else {
        format!(" [{}]", attrs.join(", "))
    }
}

fn exclusive_range(start: i32, end: i32) -> String {
    let last = end - 1;
    if last == start {
        start.to_string()
    } else if last as u32 >= MAX_FIELD_NUMBER {
        format!("{start} to max")
    } else {
        format!("{start} to {last}")
    }
}

fn type_name(field: &FieldDescriptor) -> String {
    kind_name(&field.kind(), field.field_descriptor_proto())
}

fn kind_name(kind: &Kind, raw: &FieldDescriptorProto) -> String {
    match kind {
        Kind::Message(m) => format!(".{}", m.full_name()),
        Kind::Enum(e) => format!(".{}", e.full_name()),
        _ => scalar_name(raw.r#type()).to_owned(),
    }
}

fn scalar_name(ty: Type) -> &'static str {
    match ty {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        // Named types are printed from the resolved kind instead.
        Type::Group | Type::Message | Type::Enum => "bytes",
    }
}

/// The JSON name protoc derives from a field name: underscores dropped and
/// the letter after each capitalised.
fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn default_literal(raw: &FieldDescriptorProto) -> Option<String> {
    let value = raw.default_value.as_deref()?;
    Some(match raw.r#type() {
        Type::String => quote(value.as_bytes()),
        // Descriptors hold bytes defaults already C-escaped.
        Type::Bytes => format!("\"{value}\""),
        _ => value.to_owned(),
    })
}

/// A quoted literal; printable ASCII and (for text) non-ASCII characters
/// stay as they are, everything else becomes an escape.
fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                        let _ = write!(out, "\\x{:02x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
        }
        Err(_) => {
            for &b in bytes {
                match b {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    0x20..=0x7e => out.push(b as char),
                    _ => {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
            }
        }
    }
    out.push('"');
    out
}

/// Set options as `(name, literal)` pairs: plain fields by number, then
/// extensions by number, repeated values one entry per element. Fields
/// whose meaning is carried by the printed syntax itself are left out.
fn option_entries(options: &DynamicMessage) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (field, value) in options.fields() {
        // Map entries are printed as `map<K, V>` fields instead.
        if field.full_name() == "google.protobuf.MessageOptions.map_entry" {
            continue;
        }
        push_option(&mut out, field.name().to_owned(), &field.kind(), value);
    }
    let mut extensions: Vec<_> = options.extensions().collect();
    extensions.sort_by_key(|(ext, _)| ext.number());
    for (ext, value) in extensions {
        push_option(
            &mut out,
            format!("({})", ext.full_name()),
            &ext.kind(),
            value,
        );
    }
    out
}

fn push_option(out: &mut Vec<(String, String)>, name: String, kind: &Kind, value: &Value) {
    match value {
        Value::List(items) => {
            for item in items {
                out.push((name.clone(), literal(kind, item)));
            }
        }
        other => out.push((name, literal(kind, other))),
    }
}

fn float_literal(v: f64) -> String {
    if v.is_nan() {
        "nan".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{v:?}")
    }
}

fn literal(kind: &Kind, value: &Value) -> String {
    match value {
        Value::Bool(v) => v.to_string(),
        Value::I32(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::U32(v) => v.to_string(),
        Value::U64(v) => v.to_string(),
        Value::F32(v) => float_literal(f64::from(*v)),
        Value::F64(v) => float_literal(*v),
        Value::String(s) => quote(s.as_bytes()),
        Value::Bytes(b) => quote(b),
        Value::EnumNumber(n) => match kind.as_enum().and_then(|e| e.get_value(*n)) {
            Some(v) => v.name().to_owned(),
            None => n.to_string(),
        },
        Value::Message(m) => format!("{{ {} }}", m.to_text_format()),
        // Options cannot be maps or nested lists at the top level; any
        // such value is printed through the text format for determinism.
        Value::List(_) | Value::Map(_) => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use prost::Message as _;
    use prost_reflect::prost_types::{DescriptorProto, FieldDescriptorProto};

    use super::*;
    use crate::compile;

    fn canon(text: &str) -> String {
        compile(text, &BTreeMap::new()).unwrap().canonical_text()
    }

    const RICH: &str = r#"
        syntax = "proto3";
        package acme.v1;
        import "google/protobuf/timestamp.proto";
        import "buf/validate/validate.proto";
        import "sluice/policy/v1/policy.proto";

        option java_package = "com.acme.v1";
        option go_package = "acme/v1;acmev1";

        // The record type.
        message Event {
          option (sluice.policy.v1.message) = { sensitivity: "internal" purposes: ["ops"] };
          string id = 1 [(buf.validate.field).string.uuid = true, deprecated = true];
          google.protobuf.Timestamp at = 2;
          map<string, Attr> attrs = 3;
          optional int64 seq = 4 [(buf.validate.field).int64 = { gte: 0, lt: 1000 }];
          oneof body {
            string text = 10 [(buf.validate.field).string = { min_len: 1, max_len: 80 }];
            bytes blob = 11;
          }
          repeated Kind kinds = 5 [packed = false];
          double ratio = 6 [json_name = "r", (buf.validate.field).double.finite = true];
          reserved 7, 8 to 9, 100 to max;
          reserved "old", "older";
          message Attr { string value = 1 [(sluice.policy.v1.field) = { sensitivity: "pii" }]; }
          enum Kind {
            option allow_alias = true;
            KIND_UNSPECIFIED = 0;
            KIND_A = 1;
            KIND_ALIAS = 1 [deprecated = true];
            reserved 5 to 9, 20;
            reserved "KIND_OLD";
          }
        }
        message Ack { string id = 1; }
        service Events {
          rpc Publish (Event) returns (Ack);
          rpc Tail (stream Ack) returns (stream Event) { option deprecated = true; }
        }
    "#;

    #[test]
    fn canonical_text_is_stable_under_renormalisation() {
        let once = canon(RICH);
        let twice = canon(&once);
        assert_eq!(once, twice);
        assert!(
            once.contains("map<string, .acme.v1.Event.Attr> attrs = 3;"),
            "{once}"
        );
        assert!(once.contains("json_name = \"r\""), "{once}");
        assert!(once.contains("reserved 7, 8 to 9, 100 to max;"), "{once}");
    }

    #[test]
    fn formatting_comments_and_declaration_order_do_not_matter() {
        let a = r#"syntax = "proto3";
            package p;
            import "buf/validate/validate.proto";
            // A comment.
            message M {
              string b = 2 [deprecated = true, (buf.validate.field).string.min_len = 1];
              int32 a = 1;
              Inner inner = 3;
              message Inner { bool x = 1; }
            }"#;
        let b = "syntax=\"proto3\";package p;import \"buf/validate/validate.proto\";\n\
                 /* another */ message M { int32 a=1; p.M.Inner inner=3;\n\
                 string b=2[(buf.validate.field).string={min_len:1},deprecated=true];\
                 message Inner{bool x=1;} }";
        assert_eq!(canon(a), canon(b));
    }

    #[test]
    fn meaningful_differences_survive() {
        let a = "syntax = \"proto3\"; message A { int32 x = 1; } message B { int32 y = 1; }";
        let b = "syntax = \"proto3\"; message B { int32 y = 1; } message A { int32 x = 1; }";
        let c = "syntax = \"proto3\"; message A { int64 x = 1; } message B { int32 y = 1; }";
        assert_ne!(canon(a), canon(b));
        assert_ne!(canon(a), canon(c));
    }

    #[test]
    fn serialized_and_text_forms_normalise_identically() {
        let text = canon(RICH);
        let encoded = compile(RICH, &BTreeMap::new()).unwrap().serialized_base64();
        assert_eq!(canon(&encoded), text);
    }

    #[test]
    fn protoc_style_descriptor_matches_text() {
        // What protoc emits: fully-qualified type names, json_name filled in,
        // a file name of its own, no source info.
        let field =
            |name: &str, number: i32, ty: Type, type_name: Option<&str>| FieldDescriptorProto {
                name: Some(name.to_owned()),
                number: Some(number),
                label: Some(Label::Optional as i32),
                r#type: Some(ty as i32),
                type_name: type_name.map(str::to_owned),
                json_name: Some(default_json_name(name)),
                ..Default::default()
            };
        let file = FileDescriptorProto {
            name: Some("user.proto".to_owned()),
            package: Some("people".to_owned()),
            syntax: Some("proto3".to_owned()),
            message_type: vec![
                DescriptorProto {
                    name: Some("User".to_owned()),
                    field: vec![
                        field("user_id", 1, Type::Int64, None),
                        field("home_address", 2, Type::Message, Some(".people.Address")),
                    ],
                    ..Default::default()
                },
                DescriptorProto {
                    name: Some("Address".to_owned()),
                    field: vec![field("street", 1, Type::String, None)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let encoded = STANDARD.encode(file.encode_to_vec());
        let text = r#"
            syntax = "proto3";
            package people;
            message User { Address home_address = 2; int64 user_id = 1; }
            message Address { string street = 1; }
        "#;
        assert_eq!(canon(&encoded), canon(text));
    }

    #[test]
    fn proto2_features_round_trip() {
        let text = r#"
            syntax = "proto2";
            package legacy;
            message Old {
              required string name = 1 [default = "a \"quoted\"\n"];
              optional int32 count = 2 [default = -3];
              optional bytes raw = 3 [default = "\001\377"];
              optional double d = 4 [default = inf];
              optional group Extra = 5 { optional int32 x = 1; }
              extensions 100 to 199;
            }
            extend Old { optional string tag = 100; }
        "#;
        let once = canon(text);
        assert_eq!(canon(&once), once);
        assert!(once.contains("optional group Extra = 5 {"), "{once}");
        assert!(once.contains("extend .legacy.Old {"), "{once}");
    }
}
