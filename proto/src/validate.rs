//! Record validation against the `buf.validate` rules declared in field
//! options.
//!
//! Rules are read from the descriptor pool once, when a schema is compiled,
//! into a plain plan per message type; checking a record is then one decode
//! plus a walk over only the fields that carry rules (or lead to nested
//! messages that do). Rules are matched by field number, so both Sluice's
//! embedded `buf/validate/validate.proto` and an upstream protovalidate
//! copy supplied as a reference are understood.

use std::collections::{HashMap, HashSet};
use std::fmt;

use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey,
    MessageDescriptor, ReflectMessage, Value,
};

use crate::ProtoError;

mod pattern;
mod wire;

use pattern::Pattern;

/// Full name of the field-options extension holding the rules.
const RULES_EXTENSION: &str = "buf.validate.field";

/// One broken rule in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted path to the offending value, e.g. `customer.email` or
    /// `lines[2].sku`; empty when the record as a whole is at fault.
    pub field: String,
    /// What is wrong, e.g. `value must be a valid email address`.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Decodes `payload` as `message` and checks the validation rules found in
/// `pool`. Reads the rules on every call; callers that validate many records
/// should compile a [`crate::CompiledSchema`] once and use its `validate`.
pub fn validate(
    pool: &DescriptorPool,
    message: &MessageDescriptor,
    payload: &[u8],
) -> Result<(), Vec<Violation>> {
    match RuleSet::build(pool) {
        Ok(rules) => rules.validate(message, payload),
        Err(err) => Err(vec![Violation {
            field: String::new(),
            message: err.to_string(),
        }]),
    }
}

/// The validation plan for every message type in a pool that needs checking.
#[derive(Debug, Default)]
pub(crate) struct RuleSet {
    plans: HashMap<String, Vec<FieldPlan>>,
    /// Tables for checking records straight from their wire encoding.
    wire: wire::WirePlan,
}

#[derive(Debug)]
struct FieldPlan {
    field: FieldDescriptor,
    rules: Option<FieldRules>,
    /// The field holds messages (directly, in a list or as map values)
    /// whose type has a plan of its own.
    descend: bool,
}

#[derive(Debug, Default, Clone)]
struct FieldRules {
    required: bool,
    kind: Option<TypeRules>,
}

#[derive(Debug, Clone)]
enum TypeRules {
    Signed(Bounds<i64>),
    Unsigned(Bounds<u64>),
    Float {
        bounds: Bounds<f64>,
        finite: bool,
    },
    String(StringRules),
    Enum {
        rules: EnumRules,
        ty: EnumDescriptor,
    },
    Repeated(RepeatedRules),
    Map(MapRules),
}

#[derive(Debug, Clone)]
struct Bounds<T> {
    constant: Option<T>,
    lt: Option<T>,
    lte: Option<T>,
    gt: Option<T>,
    gte: Option<T>,
}

#[derive(Debug, Default, Clone)]
struct StringRules {
    min_len: Option<u64>,
    max_len: Option<u64>,
    format: Option<StringFormat>,
    /// `string.pattern`, compiled when the schema is.
    pattern: Option<Pattern>,
}

#[derive(Debug, Clone, Copy)]
enum StringFormat {
    Email,
    Uri,
    Uuid,
}

#[derive(Debug, Default, Clone)]
struct EnumRules {
    constant: Option<i32>,
    defined_only: bool,
}

#[derive(Debug, Default, Clone)]
struct RepeatedRules {
    min_items: Option<u64>,
    max_items: Option<u64>,
    items: Option<Box<FieldRules>>,
}

#[derive(Debug, Default, Clone)]
struct MapRules {
    min_pairs: Option<u64>,
    max_pairs: Option<u64>,
    keys: Option<Box<FieldRules>>,
    values: Option<Box<FieldRules>>,
}

/// What a rule set is being applied to: a whole field, or one element of a
/// repeated field or map.
#[derive(Clone)]
enum Target {
    Scalar(Kind),
    List(Kind),
    Map { key: Kind, value: Kind },
}

impl Target {
    fn of(field: &FieldDescriptor) -> Self {
        if field.is_map()
            && let Some(entry) = field.kind().as_message()
        {
            return Target::Map {
                key: entry.map_entry_key_field().kind(),
                value: entry.map_entry_value_field().kind(),
            };
        }
        if field.is_list() {
            Target::List(field.kind())
        } else {
            Target::Scalar(field.kind())
        }
    }
}

/// The message type held by a field, looking through lists and map values.
fn held_message(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    let kind = field.kind();
    let message = kind.as_message()?;
    if field.is_map() {
        message.map_entry_value_field().kind().as_message().cloned()
    } else {
        Some(message.clone())
    }
}

impl RuleSet {
    /// Reads the rules of every field in `pool`. Rules that do not fit the
    /// field they sit on, or that Sluice cannot evaluate, are errors here so
    /// that a schema is refused at registration rather than half-enforced.
    pub(crate) fn build(pool: &DescriptorPool) -> Result<Self, ProtoError> {
        let plans = Self::plans(pool)?;
        let wire = wire::WirePlan::build(pool, &plans);
        Ok(RuleSet { plans, wire })
    }

    fn plans(pool: &DescriptorPool) -> Result<HashMap<String, Vec<FieldPlan>>, ProtoError> {
        let Some(extension) = pool.get_extension_by_name(RULES_EXTENSION) else {
            return Ok(HashMap::new());
        };
        let mut direct: HashMap<String, HashMap<u32, FieldRules>> = HashMap::new();
        for message in pool.all_messages() {
            for field in message.fields() {
                let options = field.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let value = options.get_extension(&extension);
                let Some(rules) = value.as_message() else {
                    continue;
                };
                let parsed = parse_field_rules(rules, &Target::of(&field), field.full_name())?;
                if parsed.required || parsed.kind.is_some() {
                    direct
                        .entry(message.full_name().to_owned())
                        .or_default()
                        .insert(field.number(), parsed);
                }
            }
        }

        // A message needs visiting if it has rules or holds one that does;
        // grow that set until it stops changing (types may be recursive).
        let mut needs: HashSet<String> = direct.keys().cloned().collect();
        loop {
            let mut changed = false;
            for message in pool.all_messages() {
                if needs.contains(message.full_name()) {
                    continue;
                }
                let holds_checked = message
                    .fields()
                    .any(|f| held_message(&f).is_some_and(|m| needs.contains(m.full_name())));
                if holds_checked {
                    needs.insert(message.full_name().to_owned());
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }

        let mut plans = HashMap::with_capacity(needs.len());
        for message in pool.all_messages() {
            if !needs.contains(message.full_name()) {
                continue;
            }
            let mut own = direct.remove(message.full_name()).unwrap_or_default();
            let fields = message
                .fields()
                .filter_map(|field| {
                    let rules = own.remove(&field.number());
                    let descend =
                        held_message(&field).is_some_and(|m| needs.contains(m.full_name()));
                    (rules.is_some() || descend).then_some(FieldPlan {
                        field,
                        rules,
                        descend,
                    })
                })
                .collect();
            plans.insert(message.full_name().to_owned(), fields);
        }
        Ok(plans)
    }

    pub(crate) fn validate(
        &self,
        message: &MessageDescriptor,
        payload: &[u8],
    ) -> Result<(), Vec<Violation>> {
        // The wire walk only ever proves a record good; everything else,
        // including building the violations, is left to the full decode.
        if self.wire.accepts(message, payload) {
            return Ok(());
        }
        self.validate_decoded(message, payload)
    }

    /// Decodes the record in full and checks it: the reference behaviour,
    /// and the source of every reported violation.
    fn validate_decoded(
        &self,
        message: &MessageDescriptor,
        payload: &[u8],
    ) -> Result<(), Vec<Violation>> {
        let record = DynamicMessage::decode(message.clone(), payload).map_err(|err| {
            vec![Violation {
                field: String::new(),
                message: format!("not a valid {}: {err}", message.full_name()),
            }]
        })?;
        let Some(plan) = self.plans.get(message.full_name()) else {
            return Ok(());
        };
        let mut checker = Checker {
            rules: self,
            path: String::new(),
            out: Vec::new(),
        };
        checker.message(plan, &record);
        if checker.out.is_empty() {
            Ok(())
        } else {
            Err(checker.out)
        }
    }
}

// ---------------------------------------------------------------------------
// Reading rules out of option messages.

fn unsupported(field: &str, what: impl fmt::Display) -> ProtoError {
    ProtoError::InvalidRule {
        field: field.to_owned(),
        message: what.to_string(),
    }
}

/// The set fields of an option message as `(number, value)`, rejecting any
/// number not in `known` (a rule Sluice would otherwise silently ignore).
fn set_fields<'a>(
    message: &'a DynamicMessage,
    known: &[u32],
    field: &str,
) -> Result<Vec<(u32, &'a Value)>, ProtoError> {
    let mut out = Vec::new();
    for (desc, value) in message.fields() {
        if !known.contains(&desc.number()) {
            return Err(unsupported(
                field,
                format_args!(
                    "rule `{}` is not supported by Sluice",
                    desc.full_name().trim_start_matches("buf.validate.")
                ),
            ));
        }
        out.push((desc.number(), value));
    }
    Ok(out)
}

fn parse_field_rules(
    message: &DynamicMessage,
    target: &Target,
    field: &str,
) -> Result<FieldRules, ProtoError> {
    const KNOWN: &[u32] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18, 19, 25];
    let mut rules = FieldRules::default();
    for (number, value) in set_fields(message, KNOWN, field)? {
        if number == 25 {
            rules.required = value.as_bool().unwrap_or(false);
            continue;
        }
        let Some(sub) = value.as_message() else {
            continue;
        };
        rules.kind = Some(parse_type_rules(number, sub, target, field)?);
    }
    Ok(rules)
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn parse_type_rules(
    number: u32,
    sub: &DynamicMessage,
    target: &Target,
    field: &str,
) -> Result<TypeRules, ProtoError> {
    let rule_name = sub
        .descriptor()
        .name()
        .trim_end_matches("Rules")
        .to_lowercase();
    let mismatch = |what: String| {
        unsupported(
            field,
            format_args!("`{rule_name}` rules cannot apply to {what}"),
        )
    };
    match (number, target) {
        (18, Target::List(kind)) => {
            return parse_repeated(sub, kind, field).map(TypeRules::Repeated);
        }
        (19, Target::Map { key, value }) => {
            return parse_map(sub, key, value, field).map(TypeRules::Map);
        }
        (18 | 19, _) => return Err(mismatch("a field that is not repeated/map".to_owned())),
        (_, Target::List(_)) => {
            return Err(mismatch(
                "a repeated field (use `repeated.items`)".to_owned(),
            ));
        }
        (_, Target::Map { .. }) => {
            return Err(mismatch(
                "a map field (use `map.keys` / `map.values`)".to_owned(),
            ));
        }
        _ => {}
    }
    let Target::Scalar(kind) = target else {
        return Err(mismatch("this field".to_owned()));
    };
    let expected = match number {
        1 => matches!(kind, Kind::Float),
        2 => matches!(kind, Kind::Double),
        3 => matches!(kind, Kind::Int32),
        4 => matches!(kind, Kind::Int64),
        5 => matches!(kind, Kind::Uint32),
        6 => matches!(kind, Kind::Uint64),
        7 => matches!(kind, Kind::Sint32),
        8 => matches!(kind, Kind::Sint64),
        9 => matches!(kind, Kind::Fixed32),
        10 => matches!(kind, Kind::Fixed64),
        11 => matches!(kind, Kind::Sfixed32),
        12 => matches!(kind, Kind::Sfixed64),
        14 => matches!(kind, Kind::String),
        16 => matches!(kind, Kind::Enum(_)),
        _ => false,
    };
    if !expected {
        return Err(mismatch(format!("a field of type {}", kind_name(kind))));
    }
    match number {
        1 | 2 => {
            let fields = set_fields(sub, &[1, 2, 3, 4, 5, 8], field)?;
            let finite = fields
                .iter()
                .any(|(n, v)| *n == 8 && v.as_bool() == Some(true));
            Ok(TypeRules::Float {
                bounds: bounds(&fields, as_f64),
                finite,
            })
        }
        3 | 4 | 7 | 8 | 11 | 12 => {
            let fields = set_fields(sub, &[1, 2, 3, 4, 5], field)?;
            Ok(TypeRules::Signed(bounds(&fields, as_i64)))
        }
        5 | 6 | 9 | 10 => {
            let fields = set_fields(sub, &[1, 2, 3, 4, 5], field)?;
            Ok(TypeRules::Unsigned(bounds(&fields, as_u64)))
        }
        14 => parse_string(sub, field).map(TypeRules::String),
        _ => {
            let Kind::Enum(ty) = kind else {
                return Err(mismatch(format!("a field of type {}", kind_name(kind))));
            };
            let mut rules = EnumRules::default();
            for (n, v) in set_fields(sub, &[1, 2], field)? {
                match n {
                    1 => rules.constant = v.as_i32(),
                    _ => rules.defined_only = v.as_bool().unwrap_or(false),
                }
            }
            Ok(TypeRules::Enum {
                rules,
                ty: ty.clone(),
            })
        }
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::I32(x) => Some(i64::from(*x)),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U32(x) => Some(u64::from(*x)),
        Value::U64(x) => Some(*x),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F32(x) => Some(f64::from(*x)),
        Value::F64(x) => Some(*x),
        _ => None,
    }
}

fn bounds<T>(fields: &[(u32, &Value)], convert: fn(&Value) -> Option<T>) -> Bounds<T> {
    let get = |n: u32| {
        fields
            .iter()
            .find(|(number, _)| *number == n)
            .and_then(|(_, v)| convert(v))
    };
    Bounds {
        constant: get(1),
        lt: get(2),
        lte: get(3),
        gt: get(4),
        gte: get(5),
    }
}

fn parse_string(sub: &DynamicMessage, field: &str) -> Result<StringRules, ProtoError> {
    let mut rules = StringRules::default();
    for (n, v) in set_fields(sub, &[2, 3, 6, 12, 17, 22], field)? {
        let on = v.as_bool() == Some(true);
        match n {
            2 => rules.min_len = v.as_u64(),
            3 => rules.max_len = v.as_u64(),
            6 => {
                let source = v.as_str().unwrap_or_default();
                let compiled = Pattern::new(source).map_err(|why| {
                    unsupported(
                        field,
                        format_args!(
                            "`string.pattern` {source:?} is not a valid RE2 pattern: {why}"
                        ),
                    )
                })?;
                rules.pattern = Some(compiled);
            }
            12 if on => rules.format = Some(StringFormat::Email),
            17 if on => rules.format = Some(StringFormat::Uri),
            22 if on => rules.format = Some(StringFormat::Uuid),
            _ => {}
        }
    }
    Ok(rules)
}

fn parse_repeated(
    sub: &DynamicMessage,
    element: &Kind,
    field: &str,
) -> Result<RepeatedRules, ProtoError> {
    let mut rules = RepeatedRules::default();
    for (n, v) in set_fields(sub, &[1, 2, 4], field)? {
        match n {
            1 => rules.min_items = v.as_u64(),
            2 => rules.max_items = v.as_u64(),
            _ => {
                if let Some(items) = v.as_message() {
                    let items = parse_field_rules(items, &Target::Scalar(element.clone()), field)?;
                    rules.items = Some(Box::new(items));
                }
            }
        }
    }
    Ok(rules)
}

fn parse_map(
    sub: &DynamicMessage,
    key: &Kind,
    value: &Kind,
    field: &str,
) -> Result<MapRules, ProtoError> {
    let mut rules = MapRules::default();
    for (n, v) in set_fields(sub, &[1, 2, 4, 5], field)? {
        match n {
            1 => rules.min_pairs = v.as_u64(),
            2 => rules.max_pairs = v.as_u64(),
            4 | 5 => {
                if let Some(inner) = v.as_message() {
                    let kind = if n == 4 { key } else { value };
                    let parsed = parse_field_rules(inner, &Target::Scalar(kind.clone()), field)?;
                    if n == 4 {
                        rules.keys = Some(Box::new(parsed));
                    } else {
                        rules.values = Some(Box::new(parsed));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(rules)
}

// ---------------------------------------------------------------------------
// Checking a decoded record.

struct Checker<'a> {
    rules: &'a RuleSet,
    /// Path of the value being checked; segments are pushed and truncated
    /// as the walk descends, so no path string is built unless needed.
    path: String,
    out: Vec<Violation>,
}

impl Checker<'_> {
    fn report(&mut self, message: impl Into<String>) {
        self.out.push(Violation {
            field: self.path.clone(),
            message: message.into(),
        });
    }

    fn push_name(&mut self, name: &str) -> usize {
        let mark = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(name);
        mark
    }

    fn push_index(&mut self, index: impl fmt::Display) -> usize {
        let mark = self.path.len();
        self.path.push_str(&format!("[{index}]"));
        mark
    }

    fn message(&mut self, plan: &[FieldPlan], record: &DynamicMessage) {
        for step in plan {
            let field = &step.field;
            let mark = self.push_name(field.name());
            if let Some(rules) = &step.rules {
                self.field(field, rules, record);
            }
            if step.descend {
                self.descend(field, record);
            }
            self.path.truncate(mark);
        }
    }

    fn nested(&mut self, value: &Value) {
        if let Value::Message(inner) = value
            && let Some(plan) = self.rules.plans.get(inner.descriptor().full_name())
        {
            self.message(plan, inner);
        }
    }

    fn descend(&mut self, field: &FieldDescriptor, record: &DynamicMessage) {
        if !record.has_field(field) {
            return;
        }
        let value = record.get_field(field);
        match value.as_ref() {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    let mark = self.push_index(i);
                    self.nested(item);
                    self.path.truncate(mark);
                }
            }
            Value::Map(entries) => {
                for (key, item) in entries {
                    let mark = self.push_index(MapKeyDisplay(key));
                    self.nested(item);
                    self.path.truncate(mark);
                }
            }
            other => self.nested(other),
        }
    }

    fn field(&mut self, field: &FieldDescriptor, rules: &FieldRules, record: &DynamicMessage) {
        let present = record.has_field(field);
        if !present {
            if rules.required {
                self.report("value is required");
                return;
            }
            // Unset fields with presence are skipped, as protovalidate does;
            // implicit-presence scalars are checked with their default value.
            if field.supports_presence() {
                return;
            }
        }
        if let Some(kind) = &rules.kind {
            let value = record.get_field(field);
            self.value(kind, value.as_ref());
        }
    }

    fn value(&mut self, rules: &TypeRules, value: &Value) {
        match (rules, value) {
            (TypeRules::Signed(b), v) => {
                if let Some(v) = as_i64(v)
                    && let Some(msg) = check_bounds(b, v)
                {
                    self.report(msg);
                }
            }
            (TypeRules::Unsigned(b), v) => {
                if let Some(v) = as_u64(v)
                    && let Some(msg) = check_bounds(b, v)
                {
                    self.report(msg);
                }
            }
            (TypeRules::Float { bounds, finite }, v) => {
                if let Some(v) = as_f64(v) {
                    if *finite && !v.is_finite() {
                        self.report("value must be finite");
                    } else if let Some(msg) = check_bounds(bounds, v) {
                        self.report(msg);
                    }
                }
            }
            (TypeRules::String(rules), Value::String(s)) => self.string(rules, s),
            (TypeRules::Enum { rules, ty }, Value::EnumNumber(n)) => {
                if let Some(c) = rules.constant
                    && *n != c
                {
                    self.report(format!("value must equal {c}"));
                }
                if rules.defined_only && ty.get_value(*n).is_none() {
                    self.report(format!(
                        "value must be one of the defined values of {}",
                        ty.full_name()
                    ));
                }
            }
            (TypeRules::Repeated(rules), Value::List(items)) => {
                let n = items.len() as u64;
                if let Some(min) = rules.min_items.filter(|min| n < *min) {
                    self.report(format!("value must contain at least {min} item(s)"));
                }
                if let Some(max) = rules.max_items.filter(|max| n > *max) {
                    self.report(format!("value must contain no more than {max} item(s)"));
                }
                if let Some(kind) = rules.items.as_ref().and_then(|r| r.kind.as_ref()) {
                    for (i, item) in items.iter().enumerate() {
                        let mark = self.push_index(i);
                        self.value(kind, item);
                        self.path.truncate(mark);
                    }
                }
            }
            (TypeRules::Map(rules), Value::Map(entries)) => {
                let n = entries.len() as u64;
                if let Some(min) = rules.min_pairs.filter(|min| n < *min) {
                    self.report(format!("map must have at least {min} entries"));
                }
                if let Some(max) = rules.max_pairs.filter(|max| n > *max) {
                    self.report(format!("map must have no more than {max} entries"));
                }
                let keys = rules.keys.as_ref().and_then(|r| r.kind.as_ref());
                let values = rules.values.as_ref().and_then(|r| r.kind.as_ref());
                if keys.is_some() || values.is_some() {
                    for (key, item) in entries {
                        let mark = self.push_index(MapKeyDisplay(key));
                        if let Some(kind) = keys {
                            self.value(kind, &map_key_value(key));
                        }
                        if let Some(kind) = values {
                            self.value(kind, item);
                        }
                        self.path.truncate(mark);
                    }
                }
            }
            // The rule kind was matched to the field type at compile time,
            // so a decoded value of another shape cannot occur.
            _ => {}
        }
    }

    fn string(&mut self, rules: &StringRules, s: &str) {
        if !length_certainly_ok(rules, s) {
            let len = s.chars().count() as u64;
            if let Some(min) = rules.min_len.filter(|min| len < *min) {
                self.report(format!("value length must be at least {min} characters"));
            }
            if let Some(max) = rules.max_len.filter(|max| len > *max) {
                self.report(format!("value length must be at most {max} characters"));
            }
        }
        match rules.format {
            Some(StringFormat::Email) if !is_email(s) => {
                self.report("value must be a valid email address")
            }
            Some(StringFormat::Uri) if !is_uri(s) => self.report("value must be a valid URI"),
            Some(StringFormat::Uuid) if !is_uuid(s) => self.report("value must be a valid UUID"),
            _ => {}
        }
        if let Some(pattern) = &rules.pattern
            && !pattern.is_match(s)
        {
            self.report(format!(
                "value does not match regex pattern `{}`",
                pattern.source()
            ));
        }
    }
}

/// Whether the byte length alone proves the character-length rules hold:
/// a UTF-8 string of `n` bytes has between `ceil(n / 4)` and `n` characters.
fn length_certainly_ok(rules: &StringRules, s: &str) -> bool {
    byte_length_settles(rules, s.len())
}

fn byte_length_settles(rules: &StringRules, len: usize) -> bool {
    let bytes = len as u64;
    rules.min_len.is_none_or(|min| bytes.div_ceil(4) >= min)
        && rules.max_len.is_none_or(|max| bytes <= max)
}

/// The same verdict as [`Checker::string`] without building any report,
/// on the bytes of a string already known to be valid UTF-8 (the format
/// checks look at bytes, so the wire walk need not make a `&str` unless a
/// pattern is to be matched).
#[inline(always)]
fn string_passes(rules: &StringRules, text: &[u8]) -> bool {
    // Most string rules are length bounds the byte count settles.
    (rules.format.is_none() && rules.pattern.is_none() && byte_length_settles(rules, text.len()))
        || string_passes_fully(rules, text)
}

fn string_passes_fully(rules: &StringRules, text: &[u8]) -> bool {
    if !byte_length_settles(rules, text.len()) {
        // In UTF-8 every character starts with exactly one byte that is
        // not a continuation byte (`10xxxxxx`).
        let len = text.iter().filter(|&&b| b & 0xc0 != 0x80).count() as u64;
        if rules.min_len.is_some_and(|min| len < min) || rules.max_len.is_some_and(|max| len > max)
        {
            return false;
        }
    }
    let format_ok = match rules.format {
        Some(StringFormat::Email) => is_email(text),
        Some(StringFormat::Uri) => is_uri(text),
        Some(StringFormat::Uuid) => is_uuid(text),
        _ => true,
    };
    format_ok
        && rules
            .pattern
            .as_ref()
            .is_none_or(|p| std::str::from_utf8(text).is_ok_and(|s| p.is_match(s)))
}

struct MapKeyDisplay<'a>(&'a MapKey);

impl fmt::Display for MapKeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            MapKey::Bool(v) => write!(f, "{v}"),
            MapKey::I32(v) => write!(f, "{v}"),
            MapKey::I64(v) => write!(f, "{v}"),
            MapKey::U32(v) => write!(f, "{v}"),
            MapKey::U64(v) => write!(f, "{v}"),
            MapKey::String(v) => write!(f, "{v:?}"),
        }
    }
}

/// A map key as the value it holds.
pub fn map_key_value(key: &MapKey) -> Value {
    match key {
        MapKey::Bool(v) => Value::Bool(*v),
        MapKey::I32(v) => Value::I32(*v),
        MapKey::I64(v) => Value::I64(*v),
        MapKey::U32(v) => Value::U32(*v),
        MapKey::U64(v) => Value::U64(*v),
        MapKey::String(v) => Value::String(v.clone()),
    }
}

/// A lower or upper bound and whether it is exclusive.
type Bound<T> = Option<(T, bool)>;

/// Numeric rules reduced to the comparisons they make: `gt` wins over
/// `gte`, `lt` over `lte`.
#[derive(Debug, Clone, Copy)]
struct Limits<T> {
    constant: Option<T>,
    lower: Bound<T>,
    upper: Bound<T>,
}

impl<T: PartialOrd + Copy> Limits<T> {
    fn of(b: &Bounds<T>) -> Self {
        Limits {
            constant: b.constant,
            lower: b.gt.map(|x| (x, true)).or(b.gte.map(|x| (x, false))),
            upper: b.lt.map(|x| (x, true)).or(b.lte.map(|x| (x, false))),
        }
    }

    /// The verdict of [`check_bounds`] without building its message.
    #[inline]
    fn hold(&self, v: T) -> bool {
        self.constant.is_none_or(|c| v == c) && within(self.lower, self.upper, v)
    }
}

/// `v` lies within `lower` and `upper`. A lower bound above the upper one
/// describes the range outside them, as in protovalidate.
#[inline]
fn within<T: PartialOrd + Copy>(lower: Bound<T>, upper: Bound<T>, v: T) -> bool {
    let above = |(x, exclusive): (T, bool)| if exclusive { v > x } else { v >= x };
    let below = |(x, exclusive): (T, bool)| if exclusive { v < x } else { v <= x };
    match (lower, upper) {
        (None, None) => true,
        (Some(l), None) => above(l),
        (None, Some(u)) => below(u),
        (Some(l), Some(u)) if l.0 > u.0 => above(l) || below(u),
        (Some(l), Some(u)) => above(l) && below(u),
    }
}

fn check_bounds<T: PartialOrd + fmt::Display + Copy>(b: &Bounds<T>, v: T) -> Option<String> {
    if let Some(c) = b.constant
        && v != c
    {
        return Some(format!("value must equal {c}"));
    }
    let Limits { lower, upper, .. } = Limits::of(b);
    if within(lower, upper, v) {
        return None;
    }
    let describe_lower = |(x, exclusive): (T, bool)| {
        if exclusive {
            format!("greater than {x}")
        } else {
            format!("greater than or equal to {x}")
        }
    };
    let describe_upper = |(x, exclusive): (T, bool)| {
        if exclusive {
            format!("less than {x}")
        } else {
            format!("less than or equal to {x}")
        }
    };
    match (lower, upper) {
        (None, None) => None,
        (Some(l), None) => Some(format!("value must be {}", describe_lower(l))),
        (None, Some(u)) => Some(format!("value must be {}", describe_upper(u))),
        (Some(l), Some(u)) if l.0 > u.0 => Some(format!(
            "value must be {} or {}",
            describe_lower(l),
            describe_upper(u)
        )),
        (Some(l), Some(u)) => Some(format!(
            "value must be {} and {}",
            describe_lower(l),
            describe_upper(u)
        )),
    }
}

// ---------------------------------------------------------------------------
// Format checkers. Deliberately plain: they accept what the relevant
// standards call well-formed, without DNS or scheme-specific knowledge.

/// Bytes allowed in the local part of an email address besides letters
/// and digits.
const LOCAL_SPECIALS: &[u8] = b".!#$%&'*+/=?^_`{|}~-";

/// Byte classes the format checks test, one bit each, looked up in a
/// table built at compile time rather than by comparisons per byte.
const EMAIL_LOCAL: u8 = 1;
const HOST_LABEL: u8 = 2;
const HEX_DIGIT: u8 = 4;
const BYTE_CLASSES: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < table.len() {
        let b = i as u8;
        let mut class = 0;
        if b.is_ascii_alphanumeric() {
            class |= EMAIL_LOCAL | HOST_LABEL;
        }
        if b == b'-' {
            class |= HOST_LABEL;
        }
        if b.is_ascii_hexdigit() {
            class |= HEX_DIGIT;
        }
        let mut j = 0;
        while j < LOCAL_SPECIALS.len() {
            if LOCAL_SPECIALS[j] == b {
                class |= EMAIL_LOCAL;
            }
            j += 1;
        }
        table[i] = class;
        i += 1;
    }
    table
}

fn all_in(bytes: &[u8], class: u8) -> bool {
    bytes
        .iter()
        .all(|&b| BYTE_CLASSES[usize::from(b)] & class != 0)
}

/// `local@domain`, with the local part drawn from the characters the HTML
/// living standard allows and the domain a dotted list of host labels.
///
/// The format checks read bytes: on UTF-8 text that gives the verdict a
/// character-wise reading would, since every character they accept is
/// ASCII and every byte of a non-ASCII character is above 0x7f.
pub(crate) fn is_email(s: &(impl AsRef<[u8]> + ?Sized)) -> bool {
    let s = s.as_ref();
    let Some(at) = s.iter().rposition(|&b| b == b'@') else {
        return false;
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    !local.is_empty() && local.len() <= 64 && all_in(local, EMAIL_LOCAL) && is_hostname(domain)
}

/// Dotted labels of letters, digits and inner hyphens, each 1-63 bytes,
/// 253 bytes in all. A single trailing dot is allowed.
fn is_hostname(s: &[u8]) -> bool {
    let s = s.strip_suffix(b".").unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.first() != Some(&b'-')
                && label.last() != Some(&b'-')
                && all_in(label, HOST_LABEL)
        })
}

/// An absolute URI per RFC 3986: a scheme, a colon, and a remainder made
/// of URI characters with well-formed percent escapes and at most one `#`.
pub(crate) fn is_uri(s: &(impl AsRef<[u8]> + ?Sized)) -> bool {
    let s = s.as_ref();
    let Some(colon) = s.iter().position(|&b| b == b':') else {
        return false;
    };
    let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
    let scheme_ok = scheme.first().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .iter()
            .skip(1)
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok || rest.iter().filter(|&&b| b == b'#').count() > 1 {
        return false;
    }
    if let Some(authority_and_path) = rest.strip_prefix(b"//") {
        let authority = authority_and_path
            .split(|b| matches!(b, b'/' | b'?' | b'#'))
            .next()
            .unwrap_or_default();
        // An authority with a port must have a numeric port.
        let host_port = match authority.iter().rposition(|&b| b == b'@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        if host_port.last() != Some(&b']')
            && let Some(colon) = host_port.iter().rposition(|&b| b == b':')
            && !host_port[colon + 1..].iter().all(|b| b.is_ascii_digit())
        {
            return false;
        }
    }
    const ALLOWED: &[u8] = b"-._~:/?#[]@!$&'()*+,;=%";
    let mut i = 0;
    while let Some(&b) = rest.get(i) {
        if b == b'%' {
            let hex = |j: usize| rest.get(j).is_some_and(|b| b.is_ascii_hexdigit());
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || ALLOWED.contains(&b)) {
            return false;
        }
        i += 1;
    }
    true
}

/// `8-4-4-4-12` hexadecimal digits, either case.
pub(crate) fn is_uuid(s: &(impl AsRef<[u8]> + ?Sized)) -> bool {
    let Ok(s) = <&[u8; 36]>::try_from(s.as_ref()) else {
        return false;
    };
    let hex = |run: &[u8]| all_in(run, HEX_DIGIT);
    [s[8], s[13], s[18], s[23]] == [b'-'; 4]
        && hex(&s[..8])
        && hex(&s[9..13])
        && hex(&s[14..18])
        && hex(&s[19..23])
        && hex(&s[24..])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message as _;

    use super::*;
    use crate::{CompiledSchema, compile};

    const SCHEMA: &str = r#"
        syntax = "proto3";
        package shop;
        import "buf/validate/validate.proto";

        enum Status { STATUS_UNSPECIFIED = 0; STATUS_OPEN = 1; }

        message Customer {
          string email = 1 [(buf.validate.field).string.email = true];
          string name = 2 [(buf.validate.field).string = { min_len: 2, max_len: 5 }];
          string id = 3 [(buf.validate.field).string.uuid = true];
          string site = 4 [(buf.validate.field).string.uri = true];
        }

        message Order {
          Customer customer = 1 [(buf.validate.field).required = true];
          double amount = 2 [(buf.validate.field).double = { finite: true, gte: 0 }];
          int32 quantity = 3 [(buf.validate.field).int32 = { gt: 0, lte: 100 }];
          repeated string tags = 4 [(buf.validate.field).repeated = {
            min_items: 1, max_items: 3, items: { string: { max_len: 3 } }
          }];
          Status status = 5 [(buf.validate.field).enum.defined_only = true];
          repeated Customer others = 6;
          map<string, Customer> by_name = 7;
          optional uint64 limit = 8 [(buf.validate.field).uint64.lt = 10];
          float ratio = 9 [(buf.validate.field).float.finite = true];
        }
    "#;

    fn schema() -> CompiledSchema {
        compile(SCHEMA, &BTreeMap::new()).unwrap()
    }

    fn customer(schema: &CompiledSchema, email: &str) -> DynamicMessage {
        let desc = schema.pool().get_message_by_name("shop.Customer").unwrap();
        let mut c = DynamicMessage::new(desc);
        c.set_field_by_name("email", Value::String(email.to_owned()));
        c.set_field_by_name("name", Value::String("Ann".to_owned()));
        c.set_field_by_name(
            "id",
            Value::String("123e4567-e89b-12d3-a456-426614174000".to_owned()),
        );
        c.set_field_by_name(
            "site",
            Value::String("https://example.com/a?b=c#d".to_owned()),
        );
        c
    }

    fn valid_order(schema: &CompiledSchema) -> DynamicMessage {
        let desc = schema.pool().get_message_by_name("shop.Order").unwrap();
        let mut o = DynamicMessage::new(desc);
        o.set_field_by_name(
            "customer",
            Value::Message(customer(schema, "ann@example.com")),
        );
        o.set_field_by_name("amount", Value::F64(12.5));
        o.set_field_by_name("quantity", Value::I32(3));
        o.set_field_by_name("tags", Value::List(vec![Value::String("a".to_owned())]));
        o.set_field_by_name("status", Value::EnumNumber(1));
        o
    }

    fn order_type(schema: &CompiledSchema) -> MessageDescriptor {
        schema.pool().get_message_by_name("shop.Order").unwrap()
    }

    fn check(schema: &CompiledSchema, order: &DynamicMessage) -> Vec<Violation> {
        let desc = order_type(schema);
        match schema.validate(&desc, &order.encode_to_vec()) {
            Ok(()) => Vec::new(),
            Err(v) => v,
        }
    }

    fn fields(violations: &[Violation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn valid_record_passes() {
        let schema = schema();
        assert_eq!(check(&schema, &valid_order(&schema)), vec![]);
    }

    #[test]
    fn bad_email_is_rejected_with_path() {
        let schema = schema();
        let mut order = valid_order(&schema);
        order.set_field_by_name(
            "customer",
            Value::Message(customer(&schema, "not-an-email")),
        );
        let violations = check(&schema, &order);
        assert_eq!(
            violations,
            vec![Violation {
                field: "customer.email".to_owned(),
                message: "value must be a valid email address".to_owned(),
            }]
        );
    }

    #[test]
    fn nan_and_infinity_are_rejected_when_finite() {
        let schema = schema();
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut order = valid_order(&schema);
            order.set_field_by_name("amount", Value::F64(bad));
            let violations = check(&schema, &order);
            assert_eq!(fields(&violations), vec!["amount"], "{bad}");
            assert_eq!(violations[0].message, "value must be finite");
        }
        let mut order = valid_order(&schema);
        order.set_field_by_name("ratio", Value::F32(f32::NAN));
        assert_eq!(fields(&check(&schema, &order)), vec!["ratio"]);
    }

    #[test]
    fn numeric_ranges() {
        let schema = schema();
        let mut order = valid_order(&schema);
        order.set_field_by_name("amount", Value::F64(-1.0));
        order.set_field_by_name("quantity", Value::I32(101));
        order.set_field_by_name("limit", Value::U64(10));
        let violations = check(&schema, &order);
        assert_eq!(fields(&violations), vec!["amount", "quantity", "limit"]);
        assert_eq!(
            violations[1].message,
            "value must be greater than 0 and less than or equal to 100"
        );
        // Implicit-presence scalars are checked at their default value.
        order.set_field_by_name("quantity", Value::I32(0));
        order.clear_field_by_name("amount");
        order.clear_field_by_name("limit");
        assert_eq!(fields(&check(&schema, &order)), vec!["quantity"]);
    }

    #[test]
    fn required_strings_repeated_and_enums() {
        let schema = schema();
        let mut order = valid_order(&schema);
        order.clear_field_by_name("customer");
        order.set_field_by_name("tags", Value::List(vec![]));
        order.set_field_by_name("status", Value::EnumNumber(7));
        let violations = check(&schema, &order);
        assert_eq!(fields(&violations), vec!["customer", "tags", "status"]);
        assert_eq!(violations[0].message, "value is required");

        let mut order = valid_order(&schema);
        let tags = ["a", "b", "toolong", "d"].map(|t| Value::String(t.to_owned()));
        order.set_field_by_name("tags", Value::List(tags.to_vec()));
        assert_eq!(fields(&check(&schema, &order)), vec!["tags", "tags[2]"]);
    }

    #[test]
    fn string_lengths_count_characters() {
        let schema = schema();
        let mut order = valid_order(&schema);
        let mut c = customer(&schema, "a@b.co");
        // Five characters, ten bytes.
        c.set_field_by_name("name", Value::String("ééééé".to_owned()));
        order.set_field_by_name("customer", Value::Message(c.clone()));
        assert_eq!(check(&schema, &order), vec![]);
        c.set_field_by_name("name", Value::String("x".to_owned()));
        c.set_field_by_name("id", Value::String("not-a-uuid".to_owned()));
        c.set_field_by_name("site", Value::String("no scheme here".to_owned()));
        order.set_field_by_name("customer", Value::Message(c));
        assert_eq!(
            fields(&check(&schema, &order)),
            vec!["customer.name", "customer.id", "customer.site"]
        );
    }

    #[test]
    fn nested_lists_and_maps_are_visited() {
        let schema = schema();
        let mut order = valid_order(&schema);
        order.set_field_by_name(
            "others",
            Value::List(vec![
                Value::Message(customer(&schema, "ok@example.com")),
                Value::Message(customer(&schema, "bad@")),
            ]),
        );
        let mut map = HashMap::new();
        map.insert(
            MapKey::String("k".to_owned()),
            Value::Message(customer(&schema, "@nope")),
        );
        order.set_field_by_name("by_name", Value::Map(map));
        assert_eq!(
            fields(&check(&schema, &order)),
            vec!["others[1].email", "by_name[\"k\"].email"]
        );
    }

    #[test]
    fn undecodable_payload_is_a_violation() {
        let schema = schema();
        let desc = order_type(&schema);
        let violations = schema.validate(&desc, &[0xff, 0xff, 0xff]).unwrap_err();
        assert!(
            violations[0]
                .message
                .starts_with("not a valid shop.Order: ")
        );
    }

    #[test]
    fn free_function_matches_compiled_schema() {
        let schema = schema();
        let desc = order_type(&schema);
        let mut order = valid_order(&schema);
        order.set_field_by_name("customer", Value::Message(customer(&schema, "nope")));
        let bytes = order.encode_to_vec();
        assert_eq!(
            validate(schema.pool(), &desc, &bytes),
            schema.validate(&desc, &bytes)
        );
    }

    #[test]
    fn misplaced_or_unsupported_rules_fail_compilation() {
        for (body, needle) in [
            (
                "int32 a = 1 [(buf.validate.field).string.min_len = 1];",
                "cannot apply",
            ),
            (
                "string a = 1 [(buf.validate.field).string.pattern = \"^(a$\"];",
                "not a valid RE2 pattern: unclosed group",
            ),
            (
                "repeated string a = 1 [(buf.validate.field).string.min_len = 1];",
                "repeated.items",
            ),
        ] {
            let text = format!(
                "syntax = \"proto3\"; import \"buf/validate/validate.proto\"; message M {{ {body} }}"
            );
            let err = compile(&text, &BTreeMap::new()).unwrap_err();
            assert!(matches!(err, ProtoError::InvalidRule { .. }), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    const PATTERNS: &str = r#"
        syntax = "proto3";
        package shop;
        import "buf/validate/validate.proto";
        message Sku {
          string code = 1 [(buf.validate.field).string.pattern = "^[A-Z]{3}-\\d{4}$"];
          repeated string tags = 2 [(buf.validate.field).repeated.items.string.pattern = "^[a-z]+$"];
          optional string note = 3 [(buf.validate.field).string = { pattern: "(?i)^ok", max_len: 5 }];
        }
    "#;

    #[test]
    fn pattern_rule_matches_re2_patterns() {
        let schema = compile(PATTERNS, &BTreeMap::new()).unwrap();
        let desc = schema.pool().get_message_by_name("shop.Sku").unwrap();
        let check = |code: &str, tags: &[&str], note: Option<&str>| {
            let mut m = DynamicMessage::new(desc.clone());
            m.set_field_by_name("code", Value::String(code.to_owned()));
            let tags = tags
                .iter()
                .map(|t| Value::String((*t).to_owned()))
                .collect();
            m.set_field_by_name("tags", Value::List(tags));
            if let Some(note) = note {
                m.set_field_by_name("note", Value::String(note.to_owned()));
            }
            schema.validate(&desc, &m.encode_to_vec())
        };
        assert_eq!(check("ABC-1234", &["red", "blue"], Some("OK!")), Ok(()));
        // Unset with presence: not checked.
        assert_eq!(check("XYZ-0000", &[], None), Ok(()));
        let violations = check("abc-1234", &["red", "Blue"], Some("nope")).unwrap_err();
        assert_eq!(
            violations,
            vec![
                Violation {
                    field: "code".to_owned(),
                    message: r"value does not match regex pattern `^[A-Z]{3}-\d{4}$`".to_owned(),
                },
                Violation {
                    field: "tags[1]".to_owned(),
                    message: "value does not match regex pattern `^[a-z]+$`".to_owned(),
                },
                Violation {
                    field: "note".to_owned(),
                    message: "value does not match regex pattern `(?i)^ok`".to_owned(),
                },
            ]
        );
        // RE2's `\d` is ASCII only; an implicit empty string is checked too.
        assert!(check("ABC-١٢٣٤", &[], None).is_err());
        assert!(check("", &[], None).is_err());
    }

    #[test]
    fn invalid_patterns_are_refused_at_compile_time() {
        for (pattern, needle) in [
            ("[a-", "unclosed character class"),
            ("(?<=a)b", "look-around"),
            ("\\\\1", "backreference"),
        ] {
            let text = format!(
                "syntax = \"proto3\"; import \"buf/validate/validate.proto\"; \
                 message M {{ string a = 1 [(buf.validate.field).string.pattern = \"{pattern}\"]; }}"
            );
            let err = compile(&text, &BTreeMap::new()).unwrap_err();
            assert!(matches!(err, ProtoError::InvalidRule { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains("M.a"), "{text}");
            assert!(text.contains(needle), "{text}");
        }
    }

    #[test]
    fn schemas_without_rules_only_decode() {
        let schema = compile(
            "syntax = \"proto3\"; message A { string s = 1; }",
            &BTreeMap::new(),
        )
        .unwrap();
        let desc = schema.record_type().unwrap();
        assert_eq!(schema.validate(&desc, &[0x0a, 0x01, b'x']), Ok(()));
        assert!(schema.validate(&desc, &[0x0a, 0x05, b'x']).is_err());
    }

    #[test]
    fn format_checkers() {
        for good in ["a@b.co", "first.last+tag@sub.example.org", "x@localhost"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "@b.com",
            "a@",
            "a b@c.com",
            "a@-b.com",
            "a@b..com",
            "a@b_c.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        for good in [
            "https://example.com",
            "urn:isbn:0451450523",
            "file:///etc/hosts",
            "http://[::1]:8080/p?q=%20#f",
            "mailto:a@b.co",
        ] {
            assert!(is_uri(good), "{good}");
        }
        for bad in [
            "",
            "example.com",
            "1http://x",
            "http://x y",
            "http://x/%zz",
            "a:#b#c",
            "http://h:port/",
        ] {
            assert!(!is_uri(bad), "{bad}");
        }
        assert!(is_uuid("123E4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
    }

    /// The format checks as first written, character by character: the
    /// byte-wise ones must agree with them on every string.
    mod by_chars {
        pub fn is_email(s: &str) -> bool {
            let Some((local, domain)) = s.rsplit_once('@') else {
                return false;
            };
            const LOCAL_SPECIALS: &str = ".!#$%&'*+/=?^_`{|}~-";
            !local.is_empty()
                && local.len() <= 64
                && local
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))
                && is_hostname(domain)
        }

        fn is_hostname(s: &str) -> bool {
            let s = s.strip_suffix('.').unwrap_or(s);
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }

        pub fn is_uri(s: &str) -> bool {
            let Some((scheme, rest)) = s.split_once(':') else {
                return false;
            };
            let mut scheme_chars = scheme.chars();
            let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if !scheme_ok || rest.matches('#').count() > 1 {
                return false;
            }
            if let Some(authority_and_path) = rest.strip_prefix("//") {
                let authority = authority_and_path
                    .split(['/', '?', '#'])
                    .next()
                    .unwrap_or_default();
                let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
                if !host_port.ends_with(']')
                    && let Some((_, port)) = host_port.rsplit_once(':')
                    && !port.bytes().all(|b| b.is_ascii_digit())
                {
                    return false;
                }
            }
            const ALLOWED: &str = "-._~:/?#[]@!$&'()*+,;=%";
            let bytes = rest.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let b = bytes[i];
                if b == b'%' {
                    let hex = |j: usize| bytes.get(j).is_some_and(|b| b.is_ascii_hexdigit());
                    if !(hex(i + 1) && hex(i + 2)) {
                        return false;
                    }
                    i += 3;
                    continue;
                }
                if !(b.is_ascii_alphanumeric() || ALLOWED.as_bytes().contains(&b)) {
                    return false;
                }
                i += 1;
            }
            true
        }

        pub fn is_uuid(s: &str) -> bool {
            s.len() == 36
                && s.bytes().enumerate().all(|(i, b)| match i {
                    8 | 13 | 18 | 23 => b == b'-',
                    _ => b.is_ascii_hexdigit(),
                })
        }
    }

    #[test]
    fn byte_wise_checks_agree_with_character_checks() {
        // Strings built from pieces that matter to the checks, non-ASCII
        // ones included, by a deterministic xorshift.
        const PIECES: &[&str] = &[
            "a", "Z", "7", "@", ".", "-", "_", ":", "/", "//", "#", "%", "%2f", "[", "]", "?", "+",
            "é", "😀", "\u{a0}", "ß", " ", "x.y", "http", "0",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let rules = |min: Option<u64>, max: Option<u64>| StringRules {
            min_len: min,
            max_len: max,
            ..StringRules::default()
        };
        let lengths = [
            rules(Some(3), None),
            rules(None, Some(3)),
            rules(Some(2), Some(2)),
        ];
        for _ in 0..20_000 {
            let n = next() % 10;
            let s: String = (0..n)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            assert_eq!(is_email(&s), by_chars::is_email(&s), "{s:?}");
            assert_eq!(is_uri(&s), by_chars::is_uri(&s), "{s:?}");
            for r in &lengths {
                let mut checker = Checker {
                    rules: &RuleSet::default(),
                    path: String::new(),
                    out: Vec::new(),
                };
                checker.string(r, &s);
                assert_eq!(
                    string_passes(r, s.as_bytes()),
                    checker.out.is_empty(),
                    "{s:?}"
                );
            }
        }
        // UUIDs with one or two characters replaced.
        let uuid = "123e4567-e89b-12d3-a456-426614174000";
        let swaps = ['-', 'g', 'F', '0', 'é', 'x', ':', '/'];
        for _ in 0..5_000 {
            let mut s: Vec<char> = uuid.chars().collect();
            for _ in 0..=(next() % 2) {
                let at = (next() % 36) as usize;
                s[at] = swaps[(next() % swaps.len() as u64) as usize];
            }
            let s: String = s.into_iter().collect();
            assert_eq!(is_uuid(&s), by_chars::is_uuid(&s), "{s:?}");
        }
        assert!(is_uuid(uuid));
        for s in ["a@b.co", "http://[::1]:80/", "é@b.co", "a@é.co", "h:é"] {
            assert_eq!(is_email(s), by_chars::is_email(s), "{s:?}");
            assert_eq!(is_uri(s), by_chars::is_uri(s), "{s:?}");
        }
    }
}
