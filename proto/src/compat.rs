//! Schema evolution checks following the protobuf wire format.
//!
//! A change is compatible when bytes written with one schema still decode
//! with the other into the same meaning. Comparison starts from the record
//! types (top-level messages) and walks field types pairwise by field
//! number, so renamed fields are fine but a number reused for a value of a
//! different wire shape is not.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};

use crate::{CompiledSchema, ProtoError};

/// The registry's compatibility levels, named as Confluent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompatibilityLevel {
    None,
    /// New schema can read data written with the latest previous one.
    #[default]
    Backward,
    /// ... with every previous one.
    BackwardTransitive,
    /// The latest previous schema can read data written with the new one.
    Forward,
    ForwardTransitive,
    /// Both directions.
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::None,
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether every previous version is checked, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn new_reads_old(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn old_reads_new(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CompatibilityLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ProtoError::UnknownCompatibility(s.to_owned()))
    }
}

/// Checks `new` against the `previous` versions of a subject (oldest
/// first) under `level`: all of them when transitive, else only the last.
/// Returns the problems found; empty means compatible.
pub fn check_compatibility(
    level: CompatibilityLevel,
    new: &CompiledSchema,
    previous: &[&CompiledSchema],
) -> Vec<String> {
    let against: &[&CompiledSchema] = if level.is_transitive() {
        previous
    } else {
        previous.last().map_or(&[], std::slice::from_ref)
    };
    let mut out: Vec<String> = Vec::new();
    for old in against {
        for problem in incompatibilities(old, new, level) {
            if !out.contains(&problem) {
                out.push(problem);
            }
        }
    }
    out
}

/// The incompatibilities between one previous schema and a new one in the
/// direction(s) `level` asks for (its transitivity is ignored here).
pub fn incompatibilities(
    old: &CompiledSchema,
    new: &CompiledSchema,
    level: CompatibilityLevel,
) -> Vec<String> {
    if level == CompatibilityLevel::None {
        return Vec::new();
    }
    let mut diff = Diff {
        new_reads: level.new_reads_old(),
        old_reads: level.old_reads_new(),
        visited: HashSet::new(),
        out: Vec::new(),
    };
    let (old_file, new_file) = (old.file(), new.file());
    if old_file.package_name() != new_file.package_name() {
        // Every fully-qualified type name changes with the package, so the
        // per-message checks below would only repeat this.
        diff.out.push(format!(
            "package changed from '{}' to '{}'",
            old_file.package_name(),
            new_file.package_name()
        ));
        return diff.out;
    }
    for (i, old_message) in old_file.messages().enumerate() {
        match new.pool().get_message_by_name(old_message.full_name()) {
            Some(new_message) => diff.messages(&old_message, &new_message),
            // Only the record type is known to be in use; other top-level
            // types may be dropped once nothing refers to them (references
            // from remaining fields are caught as type changes).
            None if i == 0 => diff.out.push(format!(
                "message type '{}' (the record type) was removed",
                old_message.full_name()
            )),
            None => {}
        }
    }
    diff.out
}

struct Diff {
    new_reads: bool,
    old_reads: bool,
    visited: HashSet<(String, String)>,
    out: Vec<String>,
}

/// Groups of field types whose encodings are interchangeable.
#[derive(Debug, PartialEq, Eq)]
enum WireGroup {
    Varint,
    ZigZag,
    Fixed32,
    Fixed64,
    Float,
    Double,
    LengthDelimited,
    Message,
    Group,
}

fn wire_group(field: &FieldDescriptor, kind: &Kind) -> WireGroup {
    match kind {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool | Kind::Enum(_) => {
            WireGroup::Varint
        }
        Kind::Sint32 | Kind::Sint64 => WireGroup::ZigZag,
        Kind::Fixed32 | Kind::Sfixed32 => WireGroup::Fixed32,
        Kind::Fixed64 | Kind::Sfixed64 => WireGroup::Fixed64,
        Kind::Float => WireGroup::Float,
        Kind::Double => WireGroup::Double,
        Kind::String | Kind::Bytes => WireGroup::LengthDelimited,
        Kind::Message(_) if field.is_group() => WireGroup::Group,
        Kind::Message(_) => WireGroup::Message,
    }
}

fn kind_label(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Packed encoding applies to repeated scalar numeric fields; a singular
/// reader of packed data sees one length-delimited blob, not values.
fn is_packable(kind: &Kind) -> bool {
    !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_))
}

fn real_oneof(field: &FieldDescriptor) -> Option<String> {
    field
        .containing_oneof()
        .filter(|o| !o.is_synthetic())
        .map(|o| o.name().to_owned())
}

impl Diff {
    fn messages(&mut self, old: &MessageDescriptor, new: &MessageDescriptor) {
        if !self
            .visited
            .insert((old.full_name().to_owned(), new.full_name().to_owned()))
        {
            return;
        }
        for old_field in old.fields() {
            match new.get_field(old_field.number()) {
                Some(new_field) => self.fields(old, &old_field, &new_field),
                None => {
                    if self.old_reads && old_field.cardinality() == Cardinality::Required {
                        self.out.push(format!(
                            "{}: required field '{}' (number {}) was removed",
                            old.full_name(),
                            old_field.name(),
                            old_field.number()
                        ));
                    }
                }
            }
        }
        for new_field in new.fields() {
            if old.get_field(new_field.number()).is_none()
                && self.new_reads
                && new_field.cardinality() == Cardinality::Required
            {
                self.out.push(format!(
                    "{}: required field '{}' (number {}) was added",
                    new.full_name(),
                    new_field.name(),
                    new_field.number()
                ));
            }
        }
    }

    fn fields(
        &mut self,
        message: &MessageDescriptor,
        old: &FieldDescriptor,
        new: &FieldDescriptor,
    ) {
        let at = format!(
            "{}: field '{}' (number {})",
            message.full_name(),
            new.name(),
            new.number()
        );
        if old.is_map() || new.is_map() {
            match (old.kind().as_message(), new.kind().as_message()) {
                (Some(old_entry), Some(new_entry)) if old.is_map() && new.is_map() => {
                    let (ok, nk) = (
                        old_entry.map_entry_key_field(),
                        new_entry.map_entry_key_field(),
                    );
                    self.kinds(&at, "map key", &ok, &nk);
                    let (ov, nv) = (
                        old_entry.map_entry_value_field(),
                        new_entry.map_entry_value_field(),
                    );
                    self.kinds(&at, "map value", &ov, &nv);
                }
                _ => self
                    .out
                    .push(format!("{at} changed between a map and a non-map field")),
            }
        } else {
            if old.is_list() != new.is_list() {
                let (from, to) = if old.is_list() {
                    ("repeated", "singular")
                } else {
                    ("singular", "repeated")
                };
                let why = if is_packable(&old.kind()) || is_packable(&new.kind()) {
                    " (packed numeric values do not decode as a single value)"
                } else {
                    " (a singular reader keeps only the last element)"
                };
                self.out
                    .push(format!("{at} changed from {from} to {to}{why}"));
            }
            self.kinds(&at, "type", old, new);
        }

        match (real_oneof(old), real_oneof(new)) {
            (None, Some(o)) => self.out.push(format!("{at} was moved into oneof '{o}'")),
            (Some(o), None) => self.out.push(format!("{at} was moved out of oneof '{o}'")),
            (Some(a), Some(b)) if a != b => self
                .out
                .push(format!("{at} was moved from oneof '{a}' to oneof '{b}'")),
            _ => {}
        }

        let (old_required, new_required) = (
            old.cardinality() == Cardinality::Required,
            new.cardinality() == Cardinality::Required,
        );
        if new_required && !old_required && self.new_reads {
            self.out.push(format!("{at} became required"));
        }
        if old_required && !new_required && self.old_reads {
            self.out.push(format!("{at} is no longer required"));
        }
    }

    fn kinds(&mut self, at: &str, what: &str, old: &FieldDescriptor, new: &FieldDescriptor) {
        let (old_kind, new_kind) = (old.kind(), new.kind());
        if wire_group(old, &old_kind) != wire_group(new, &new_kind) {
            self.out.push(format!(
                "{at}: {what} changed from {} to {}, which is not wire-compatible",
                kind_label(&old_kind),
                kind_label(&new_kind)
            ));
            return;
        }
        if let (Kind::Message(old_m), Kind::Message(new_m)) = (&old_kind, &new_kind) {
            if old_m.full_name() != new_m.full_name() {
                self.out.push(format!(
                    "{at}: {what} changed from message {} to message {}",
                    old_m.full_name(),
                    new_m.full_name()
                ));
            } else {
                self.messages(old_m, new_m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::compile;

    fn schema(body: &str) -> CompiledSchema {
        compile(
            &format!("syntax = \"proto3\"; package p; {body}"),
            &BTreeMap::new(),
        )
        .unwrap()
    }

    fn problems(old: &str, new: &str, level: CompatibilityLevel) -> Vec<String> {
        check_compatibility(level, &schema(new), &[&schema(old)])
    }

    const BASE: &str = "message Order { string id = 1; int32 qty = 2; Line line = 3; } \
                        message Line { string sku = 1; }";

    #[test]
    fn adding_a_field_is_compatible_both_ways() {
        let new = "message Order { string id = 1; int32 qty = 2; Line line = 3; \
                   double price = 4; } message Line { string sku = 1; }";
        for level in CompatibilityLevel::ALL {
            assert_eq!(problems(BASE, new, level), Vec::<String>::new(), "{level}");
        }
    }

    #[test]
    fn removing_a_field_and_renaming_are_compatible() {
        let new = "message Order { string order_id = 1; Line line = 3; } \
                   message Line { string sku = 1; }";
        assert!(problems(BASE, new, CompatibilityLevel::FullTransitive).is_empty());
    }

    #[test]
    fn reused_number_with_new_type_is_incompatible() {
        let new = "message Order { string id = 1; string qty = 2; Line line = 3; } \
                   message Line { string sku = 1; }";
        let found = problems(BASE, new, CompatibilityLevel::Backward);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("'qty' (number 2)"), "{found:?}");
        assert!(found[0].contains("int32 to string"), "{found:?}");
        // NONE accepts anything.
        assert!(problems(BASE, new, CompatibilityLevel::None).is_empty());
    }

    #[test]
    fn wire_compatible_type_groups_are_accepted() {
        let old = "message M { int32 a = 1; sint32 b = 2; fixed32 c = 3; string d = 4; \
                   fixed64 e = 5; E f = 6; } enum E { E0 = 0; }";
        let new = "message M { uint64 a = 1; sint64 b = 2; sfixed32 c = 3; bytes d = 4; \
                   sfixed64 e = 5; int32 f = 6; } enum E { E0 = 0; }";
        assert!(problems(old, new, CompatibilityLevel::Full).is_empty());
        let bad = "message M { sint32 a = 1; int32 b = 2; fixed64 c = 3; int32 d = 4; \
                   double e = 5; string f = 6; } enum E { E0 = 0; }";
        assert_eq!(problems(old, bad, CompatibilityLevel::Full).len(), 6);
    }

    #[test]
    fn nested_message_changes_are_found() {
        let new = "message Order { string id = 1; int32 qty = 2; Line line = 3; } \
                   message Line { int64 sku = 1; }";
        let found = problems(BASE, new, CompatibilityLevel::Backward);
        assert!(found[0].starts_with("p.Line: field 'sku'"), "{found:?}");
        let swapped = "message Order { string id = 1; int32 qty = 2; Other line = 3; } \
                       message Line { string sku = 1; } message Other { string sku = 1; }";
        let found = problems(BASE, swapped, CompatibilityLevel::Backward);
        assert!(
            found[0].contains("message p.Line to message p.Other"),
            "{found:?}"
        );
    }

    #[test]
    fn oneof_moves_and_label_changes_are_incompatible() {
        let old = "message M { string a = 1; string b = 2; repeated int32 c = 3; string d = 4; }";
        let new = "message M { oneof choice { string a = 1; string b = 2; } int32 c = 3; \
                   repeated string d = 4; }";
        let found = problems(old, new, CompatibilityLevel::Backward);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.contains("moved into oneof 'choice'"))
        );
        assert!(found.iter().any(|p| p.contains("repeated to singular")));
        // proto3 `optional` is a synthetic oneof, not a move.
        let optional = "message M { optional string a = 1; string b = 2; \
                        repeated int32 c = 3; string d = 4; }";
        assert!(problems(old, optional, CompatibilityLevel::Full).is_empty());
    }

    #[test]
    fn removed_record_type_and_package_change() {
        let found = problems(
            BASE,
            "message Line { string sku = 1; }",
            CompatibilityLevel::Backward,
        );
        assert_eq!(
            found,
            vec!["message type 'p.Order' (the record type) was removed"]
        );
        let other_pkg = compile(
            "syntax = \"proto3\"; package q; message Order { string id = 1; }",
            &BTreeMap::new(),
        )
        .unwrap();
        let found = check_compatibility(CompatibilityLevel::Backward, &other_pkg, &[&schema(BASE)]);
        assert_eq!(found, vec!["package changed from 'p' to 'q'"]);
    }

    #[test]
    fn required_fields_depend_on_direction() {
        let compile2 = |body: &str| {
            compile(
                &format!("syntax = \"proto2\"; package p; {body}"),
                &BTreeMap::new(),
            )
            .unwrap()
        };
        let old = compile2("message M { optional string a = 1; }");
        let new = compile2("message M { optional string a = 1; required int32 b = 2; }");
        let backward = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
        assert_eq!(backward.len(), 1, "{backward:?}");
        assert!(check_compatibility(CompatibilityLevel::Forward, &new, &[&old]).is_empty());
    }

    #[test]
    fn transitive_checks_every_version() {
        let v1 = schema("message M { int32 a = 1; }");
        let v2 = schema("message M { }");
        let v3 = schema("message M { string a = 1; }");
        assert!(check_compatibility(CompatibilityLevel::Backward, &v3, &[&v1, &v2]).is_empty());
        assert_eq!(
            check_compatibility(CompatibilityLevel::BackwardTransitive, &v3, &[&v1, &v2]).len(),
            1
        );
    }

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!(
            "full_transitive".parse::<CompatibilityLevel>(),
            Ok(CompatibilityLevel::FullTransitive)
        );
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
        for level in CompatibilityLevel::ALL {
            assert_eq!(level.as_str().parse::<CompatibilityLevel>(), Ok(level));
        }
    }
}
