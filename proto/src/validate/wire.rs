//! Checking a record straight from its protobuf wire encoding.
//!
//! Decoding into a `DynamicMessage` costs far more than the rules
//! themselves, so records are first walked once over their bytes using
//! per-message tables prepared when the schema is compiled. The walk
//! answers a single question: does the record certainly decode and
//! certainly satisfy every rule? It only says yes when it can prove it;
//! anything it cannot settle cheaply (a broken encoding, a broken rule, a
//! group, a message field given twice and so merged, a map that might hold
//! duplicate keys, very deep nesting) makes it say no, and the caller then
//! decodes the record in full, which yields the exact violations. A yes is
//! therefore always the answer the full decode would give, and a no costs
//! one extra pass over a record that is (almost always) being refused.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, Value};

use super::{Checker, FieldPlan, Limits, RuleSet, StringRules, TypeRules};

/// Deeper nesting than this is left to the full decoder (whose own limit
/// is higher), which also bounds the recursion here.
const MAX_DEPTH: u32 = 64;
/// Per-message counters kept on the stack while walking one message.
const MAX_SLOTS: usize = 32;
/// Field numbers up to this are looked up in a dense table.
const DENSE_LIMIT: u32 = 1024;
const NO_FIELD: u32 = u32::MAX;

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Bool,
    Enum,
    Fixed32,
    Sfixed32,
    Float,
    Fixed64,
    Sfixed64,
    Double,
    String,
    Bytes,
    /// Index of the held message's table.
    Message(u32),
    /// Group-encoded message: always left to the full decoder.
    Group,
}

impl Ty {
    fn of(field: &FieldDescriptor, index: &NameIndex) -> Ty {
        match field.kind() {
            Kind::Int32 => Ty::Int32,
            Kind::Int64 => Ty::Int64,
            Kind::Uint32 => Ty::Uint32,
            Kind::Uint64 => Ty::Uint64,
            Kind::Sint32 => Ty::Sint32,
            Kind::Sint64 => Ty::Sint64,
            Kind::Bool => Ty::Bool,
            Kind::Enum(_) => Ty::Enum,
            Kind::Fixed32 => Ty::Fixed32,
            Kind::Sfixed32 => Ty::Sfixed32,
            Kind::Float => Ty::Float,
            Kind::Fixed64 => Ty::Fixed64,
            Kind::Sfixed64 => Ty::Sfixed64,
            Kind::Double => Ty::Double,
            Kind::String => Ty::String,
            Kind::Bytes => Ty::Bytes,
            Kind::Message(m) => {
                if field.is_group() {
                    Ty::Group
                } else {
                    index
                        .get(m.full_name())
                        .map_or(Ty::Group, |&i| Ty::Message(i))
                }
            }
        }
    }

    fn wire_type(self) -> u8 {
        match self {
            Ty::Int32
            | Ty::Int64
            | Ty::Uint32
            | Ty::Uint64
            | Ty::Sint32
            | Ty::Sint64
            | Ty::Bool
            | Ty::Enum => WT_VARINT,
            Ty::Fixed32 | Ty::Sfixed32 | Ty::Float => WT_I32,
            Ty::Fixed64 | Ty::Sfixed64 | Ty::Double => WT_I64,
            Ty::String | Ty::Bytes | Ty::Message(_) => WT_LEN,
            // No wire type is accepted for a group here.
            Ty::Group => u8::MAX,
        }
    }

    fn packable(self) -> bool {
        !matches!(self, Ty::String | Ty::Bytes | Ty::Message(_) | Ty::Group)
    }
}

/// A decoded scalar in the shape its rules compare: signed, unsigned or
/// floating point, as prost-reflect's `Value` would hold it.
#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    /// The value is its type's default (so absent for implicit presence).
    fn is_default(self) -> bool {
        match self {
            Num::I(v) => v == 0,
            Num::U(v) => v == 0,
            Num::F(v) => v == 0.0,
        }
    }
}

/// The rules on one value of a field, resolved against the field's type
/// when the plan is built so the walk checks a number or a string without
/// building a `Value`. A rule whose kind does not fit the type is `None`:
/// the decoded check ignores such a pair too.
#[derive(Debug)]
enum Check {
    None,
    Signed(Limits<i64>),
    Unsigned(Limits<u64>),
    Float {
        limits: Limits<f64>,
        finite: bool,
    },
    String(Box<StringRules>),
    Enum {
        constant: Option<i32>,
        /// Sorted numbers of the enum's values, when only those are allowed.
        defined: Option<Vec<i32>>,
    },
}

impl Check {
    fn of(rules: Option<&TypeRules>, ty: Ty) -> Check {
        use Ty::*;
        match (rules, ty) {
            (Some(TypeRules::Signed(b)), Int32 | Int64 | Sint32 | Sint64 | Sfixed32 | Sfixed64) => {
                Check::Signed(Limits::of(b))
            }
            (Some(TypeRules::Unsigned(b)), Uint32 | Uint64 | Fixed32 | Fixed64) => {
                Check::Unsigned(Limits::of(b))
            }
            (Some(TypeRules::Float { bounds, finite }), Float | Double) => Check::Float {
                limits: Limits::of(bounds),
                finite: *finite,
            },
            (Some(TypeRules::String(r)), String) => Check::String(Box::new(r.clone())),
            (Some(TypeRules::Enum { rules, ty }), Enum) => Check::Enum {
                constant: rules.constant,
                defined: rules.defined_only.then(|| {
                    let mut numbers: Vec<i32> = ty.values().map(|v| v.number()).collect();
                    numbers.sort_unstable();
                    numbers.dedup();
                    numbers
                }),
            },
            _ => Check::None,
        }
    }

    /// `value` satisfies the rules.
    #[inline(always)]
    fn holds(&self, value: Num) -> bool {
        match (self, value) {
            (Check::None, _) => true,
            (Check::Signed(l), Num::I(v)) => l.hold(v),
            (Check::Unsigned(l), Num::U(v)) => l.hold(v),
            (Check::Float { limits, finite }, Num::F(v)) => {
                (!*finite || v.is_finite()) && limits.hold(v)
            }
            (Check::Enum { constant, defined }, Num::I(v)) => {
                // Enum numbers are read as `i32`, so this is lossless.
                let n = v as i32;
                constant.is_none_or(|c| n == c)
                    && defined.as_ref().is_none_or(|d| d.binary_search(&n).is_ok())
            }
            // Cannot occur: a check is only built for the type it fits.
            _ => true,
        }
    }
}

#[derive(Debug)]
struct WireField {
    number: u32,
    ty: Ty,
    /// `ty.wire_type()`, kept at hand for the walk.
    wire_type: u8,
    /// A list of a packable type, so also readable as one packed run.
    packed: bool,
    /// Repeated (lists and maps).
    list: bool,
    map: bool,
    /// Rules applied to every value read for the field: the field's own
    /// scalar rules, `repeated.items`, or `map.keys` / `map.values` on the
    /// key and value fields of a map entry.
    each: Option<TypeRules>,
    /// `each`, prepared for the walk.
    check: Check,
    required: bool,
    /// A singular field whose absence means its default value is checked.
    implicit: bool,
    /// The default value satisfies `each`.
    default_ok: bool,
    /// Item / pair count bounds of a list or map.
    min: Option<u64>,
    max: Option<u64>,
    slot: Option<usize>,
    /// Slot recording the last member set of the field's oneof, when a
    /// member's presence matters.
    oneof_slot: Option<usize>,
}

#[derive(Debug)]
struct Table {
    desc: MessageDescriptor,
    map_entry: bool,
    fields: Vec<WireField>,
    /// Field number → index into `fields` (or `NO_FIELD`), for small numbers.
    dense: Vec<u32>,
    /// One-byte key (fields 1-15) → 1 + index into `fields`, when the key
    /// carries the field's usual wire type; 0 otherwise. Lets the walk go
    /// from the key byte straight to the field on the common path.
    by_key: [u8; 128],
    /// Numbers of extensions of this message known to the pool; the full
    /// decoder parses those, so they are not skipped as unknown here.
    extensions: Vec<u32>,
    slots: usize,
    /// Fields with something to check once the whole message was read.
    finals: Vec<usize>,
    /// Too many counters for the stack: always use the full decoder.
    unsupported: bool,
}

impl Table {
    fn field(&self, number: u32) -> Option<&WireField> {
        if let Some(&i) = self.dense.get(number as usize) {
            if i == NO_FIELD {
                return None;
            }
            return self.fields.get(i as usize);
        }
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}

/// The wire tables of every message type in a pool.
#[derive(Debug, Default)]
pub(super) struct WirePlan {
    tables: Vec<Table>,
    /// Looked up once per record.
    by_name: NameIndex,
}

type NameIndex = HashMap<String, u32, BuildHasherDefault<NameHasher>>;

/// FNV-1a, for the per-record lookup of a message type by name. The names
/// come from registered schemas, not from records, so the flooding
/// resistance of the default hasher buys nothing here, and it costs
/// several times more on short keys.
struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl WirePlan {
    pub(super) fn build(pool: &DescriptorPool, plans: &HashMap<String, Vec<FieldPlan>>) -> Self {
        let messages: Vec<MessageDescriptor> = pool.all_messages().collect();
        let by_name: NameIndex = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((m.full_name().to_owned(), u32::try_from(i).ok()?)))
            .collect();

        let mut tables: Vec<Table> = messages
            .iter()
            .map(|desc| {
                let map_entry = desc.is_map_entry();
                let mut fields: Vec<WireField> = desc
                    .fields()
                    .map(|field| {
                        let ty = Ty::of(&field, &by_name);
                        let list = field.is_list() || field.is_map();
                        WireField {
                            number: field.number(),
                            ty,
                            wire_type: ty.wire_type(),
                            packed: list && ty.packable(),
                            list,
                            map: field.is_map(),
                            each: None,
                            check: Check::None,
                            required: false,
                            // Entries always hold a key and a value: missing
                            // ones decode as defaults, whatever the syntax.
                            implicit: map_entry
                                || (!field.supports_presence()
                                    && !field.is_list()
                                    && !field.is_map()),
                            default_ok: true,
                            min: None,
                            max: None,
                            slot: None,
                            oneof_slot: None,
                        }
                    })
                    .collect();
                fields.sort_by_key(|f| f.number);
                Table {
                    desc: desc.clone(),
                    map_entry,
                    fields,
                    dense: Vec::new(),
                    by_key: [0; 128],
                    extensions: desc.extensions().map(|e| e.number()).collect(),
                    slots: 0,
                    finals: Vec::new(),
                    unsupported: false,
                }
            })
            .collect();

        // Attach the rules.
        for (name, plan) in plans {
            let Some(&t) = by_name.get(name) else {
                continue;
            };
            for step in plan {
                let Some(rules) = &step.rules else {
                    continue;
                };
                let number = step.field.number();
                let mut entry_rules = None;
                if let Some(f) = field_mut(&mut tables, t as usize, number) {
                    f.required = rules.required;
                    match &rules.kind {
                        Some(TypeRules::Repeated(r)) => {
                            f.min = r.min_items;
                            f.max = r.max_items;
                            f.each = r.items.as_ref().and_then(|i| i.kind.clone());
                        }
                        Some(TypeRules::Map(m)) => {
                            f.min = m.min_pairs;
                            f.max = m.max_pairs;
                            let keys = m.keys.as_ref().and_then(|k| k.kind.clone());
                            let values = m.values.as_ref().and_then(|v| v.kind.clone());
                            if let Ty::Message(entry) = f.ty {
                                entry_rules = Some((entry, keys, values));
                            }
                        }
                        Some(other) => f.each = Some(other.clone()),
                        None => {}
                    }
                }
                if let Some((entry, keys, values)) = entry_rules {
                    let entry = entry as usize;
                    if let Some(k) = field_mut(&mut tables, entry, 1) {
                        k.each = keys;
                    }
                    if let Some(v) = field_mut(&mut tables, entry, 2) {
                        v.each = values;
                    }
                }
            }
        }

        // Whether a message type has rules somewhere beneath it; only then
        // can merging two occurrences of it change the outcome.
        let checked: HashSet<u32> = plans
            .keys()
            .filter_map(|name| by_name.get(name).copied())
            .collect();

        let scratch = RuleSet::default();
        for (table, desc) in tables.iter_mut().zip(&messages) {
            let mut slots = 0usize;
            let mut oneof_slots: HashMap<String, usize> = HashMap::new();
            // Oneofs with a required member need their last member tracked.
            for field in desc.fields() {
                let required = table
                    .fields
                    .iter()
                    .any(|f| f.number == field.number() && f.required);
                if required && let Some(oneof) = field.containing_oneof() {
                    oneof_slots
                        .entry(oneof.name().to_owned())
                        .or_insert_with(|| {
                            slots += 1;
                            slots - 1
                        });
                }
            }
            for field in desc.fields() {
                let oneof_slot = field
                    .containing_oneof()
                    .and_then(|o| oneof_slots.get(o.name()).copied());
                let default = field.default_value();
                let map_entry = table.map_entry;
                let Ok(i) = table
                    .fields
                    .binary_search_by_key(&field.number(), |f| f.number)
                else {
                    continue;
                };
                let f = &mut table.fields[i];
                f.oneof_slot = oneof_slot;
                f.check = Check::of(f.each.as_ref(), f.ty);
                if f.implicit
                    && let Some(each) = &f.each
                {
                    f.default_ok = scratch.passes(each, &default);
                }
                let nested_checked = match f.ty {
                    Ty::Message(m) => map_entry || checked.contains(&m),
                    _ => false,
                };
                let needs_slot = if f.list {
                    f.required || f.min.is_some() || f.max.is_some()
                } else {
                    f.required || (f.implicit && !f.default_ok) || nested_checked
                };
                if needs_slot {
                    f.slot = Some(slots);
                    slots += 1;
                }
                let needs_final = if f.list {
                    needs_slot
                } else {
                    f.required
                        || (f.implicit && !f.default_ok)
                        || (map_entry && matches!(f.ty, Ty::Message(_)))
                };
                if needs_final {
                    table.finals.push(i);
                }
            }
            table.slots = slots;
            table.unsupported = slots > MAX_SLOTS;
            for (i, f) in table.fields.iter().enumerate() {
                let key = (f.number << 3) | u32::from(f.wire_type);
                if f.wire_type <= WT_I32
                    && let Some(entry) = table.by_key.get_mut(key as usize)
                    && let Ok(i) = u8::try_from(i + 1)
                {
                    *entry = i;
                }
            }
            let max = table.fields.iter().map(|f| f.number).max().unwrap_or(0);
            if max <= DENSE_LIMIT {
                table.dense = vec![NO_FIELD; max as usize + 1];
                for (i, f) in table.fields.iter().enumerate() {
                    if let Ok(i) = u32::try_from(i) {
                        table.dense[f.number as usize] = i;
                    }
                }
            }
        }

        WirePlan { tables, by_name }
    }

    /// True only if `payload` certainly decodes as `message` and passes
    /// every rule.
    pub(super) fn accepts(&self, message: &MessageDescriptor, payload: &[u8]) -> bool {
        let Some(&t) = self.by_name.get(message.full_name()) else {
            return false;
        };
        match self.tables.get(t as usize) {
            // A descriptor from another pool could differ under the same name.
            Some(table) if table.desc == *message => {}
            _ => return false,
        }
        Walker { plan: self }.message(t as usize, payload, 0)
    }
}

fn field_mut(tables: &mut [Table], table: usize, number: u32) -> Option<&mut WireField> {
    let table = tables.get_mut(table)?;
    let i = table
        .fields
        .binary_search_by_key(&number, |f| f.number)
        .ok()?;
    table.fields.get_mut(i)
}

struct Walker<'a> {
    plan: &'a WirePlan,
}

impl Walker<'_> {
    fn message(&self, t: usize, mut buf: &[u8], depth: u32) -> bool {
        let Some(table) = self.plan.tables.get(t) else {
            return false;
        };
        if depth > MAX_DEPTH || table.unsupported {
            return false;
        }
        let mut slots = [0u32; MAX_SLOTS];
        while let Some((&first, rest)) = buf.split_first() {
            if let Some(&hit) = table.by_key.get(usize::from(first))
                && let Some(field) = table.fields.get(usize::from(hit).wrapping_sub(1))
            {
                // A one-byte key with the field's usual wire type.
                buf = rest;
                self.mark_oneof(field, &mut slots);
                if !self.value(field, &mut buf, &mut slots, depth) {
                    return false;
                }
                continue;
            }
            let Some(key) = varint(&mut buf) else {
                return false;
            };
            let Ok(key) = u32::try_from(key) else {
                return false;
            };
            let wire_type = (key & 7) as u8;
            let number = key >> 3;
            if number == 0 {
                return false;
            }
            match table.field(number) {
                Some(field) => {
                    if !self.occurrence(field, wire_type, &mut buf, &mut slots, depth) {
                        return false;
                    }
                }
                None => {
                    // Unknown fields inside a map entry, groups and known
                    // extensions are left to the full decoder.
                    if table.map_entry
                        || table.extensions.contains(&number)
                        || !skip(wire_type, &mut buf)
                    {
                        return false;
                    }
                }
            }
        }
        table.finals.iter().all(|&i| {
            table
                .fields
                .get(i)
                .is_some_and(|f| self.finish(table, f, &slots, depth))
        })
    }

    fn finish(&self, table: &Table, f: &WireField, slots: &[u32; MAX_SLOTS], depth: u32) -> bool {
        let seen = f.slot.and_then(|s| slots.get(s)).copied().unwrap_or(0);
        if f.list {
            let n = u64::from(seen);
            if (f.required && n == 0)
                || f.min.is_some_and(|min| n < min)
                || f.max.is_some_and(|max| n > max)
            {
                return false;
            }
            // Entries repeating a key collapse into one pair, so a count of
            // entries proves nothing about a lower bound above one.
            return !(f.map && f.min.is_some_and(|min| min >= 2));
        }
        if f.required {
            let present = match f.oneof_slot {
                Some(o) => slots.get(o).copied() == Some(f.number),
                None => seen != 0,
            };
            if !present {
                return false;
            }
        }
        if f.implicit && !f.default_ok && seen == 0 {
            return false;
        }
        if table.map_entry
            && let Ty::Message(m) = f.ty
            && seen == 0
        {
            // A missing value is an empty message, which has rules of its own.
            return self.message(m as usize, &[], depth + 1);
        }
        true
    }

    /// Records `f` as the last member seen of its oneof, if that matters.
    #[inline(always)]
    fn mark_oneof(&self, f: &WireField, slots: &mut [u32; MAX_SLOTS]) {
        if let Some(o) = f.oneof_slot
            && let Some(s) = slots.get_mut(o)
        {
            *s = f.number;
        }
    }

    #[inline(always)]
    fn occurrence(
        &self,
        f: &WireField,
        wire_type: u8,
        buf: &mut &[u8],
        slots: &mut [u32; MAX_SLOTS],
        depth: u32,
    ) -> bool {
        self.mark_oneof(f, slots);
        if f.packed && wire_type == WT_LEN {
            let Some(mut packed) = take_len(buf) else {
                return false;
            };
            while !packed.is_empty() {
                if !self.value(f, &mut packed, slots, depth) {
                    return false;
                }
            }
            return true;
        }
        if wire_type != f.wire_type {
            return false;
        }
        self.value(f, buf, slots, depth)
    }

    /// Reads one value of `f` (already known to have the right wire type),
    /// checks it and records it in the field's slot.
    #[inline(always)]
    fn value(
        &self,
        f: &WireField,
        buf: &mut &[u8],
        slots: &mut [u32; MAX_SLOTS],
        depth: u32,
    ) -> bool {
        let non_default = match f.ty {
            Ty::String => {
                let Some(bytes) = take_len(buf) else {
                    return false;
                };
                if !is_utf8(bytes) {
                    return false;
                }
                if let Check::String(rules) = &f.check
                    && !super::string_passes(rules, bytes)
                {
                    return false;
                }
                !bytes.is_empty()
            }
            Ty::Bytes => {
                let Some(bytes) = take_len(buf) else {
                    return false;
                };
                !bytes.is_empty()
            }
            Ty::Message(m) => {
                let Some(bytes) = take_len(buf) else {
                    return false;
                };
                if !f.list
                    && let Some(s) = f.slot
                    && slots.get(s).is_some_and(|&n| n != 0)
                {
                    // A second occurrence is merged into the first.
                    return false;
                }
                if !self.message(m as usize, bytes, depth + 1) {
                    return false;
                }
                true
            }
            Ty::Group => return false,
            _ => {
                let Some(value) = scalar(f.ty, buf) else {
                    return false;
                };
                if !f.check.holds(value) {
                    return false;
                }
                !value.is_default()
            }
        };
        if let Some(s) = f.slot
            && let Some(slot) = slots.get_mut(s)
        {
            *slot = if f.list {
                slot.saturating_add(1)
            } else if f.required && f.implicit {
                // Presence of an implicit field is a non-default last value.
                u32::from(non_default)
            } else {
                1
            };
        }
        true
    }
}

/// Decodes one scalar as prost does, widened to the type its rules use.
#[inline(always)]
fn scalar(ty: Ty, buf: &mut &[u8]) -> Option<Num> {
    Some(match ty {
        Ty::Int32 | Ty::Enum => Num::I(i64::from(varint(buf)? as i32)),
        Ty::Int64 => Num::I(varint(buf)? as i64),
        Ty::Uint32 => Num::U(u64::from(varint(buf)? as u32)),
        Ty::Uint64 => Num::U(varint(buf)?),
        Ty::Sint32 => {
            let n = varint(buf)? as u32;
            Num::I(i64::from(((n >> 1) as i32) ^ (-((n & 1) as i32))))
        }
        Ty::Sint64 => {
            let n = varint(buf)?;
            Num::I(((n >> 1) as i64) ^ (-((n & 1) as i64)))
        }
        Ty::Bool => Num::U(u64::from(varint(buf)? != 0)),
        Ty::Fixed32 => Num::U(u64::from(u32::from_le_bytes(fixed(buf)?))),
        Ty::Sfixed32 => Num::I(i64::from(i32::from_le_bytes(fixed(buf)?))),
        Ty::Float => Num::F(f64::from(f32::from_le_bytes(fixed(buf)?))),
        Ty::Fixed64 => Num::U(u64::from_le_bytes(fixed(buf)?)),
        Ty::Sfixed64 => Num::I(i64::from_le_bytes(fixed(buf)?)),
        Ty::Double => Num::F(f64::from_le_bytes(fixed(buf)?)),
        Ty::String | Ty::Bytes | Ty::Message(_) | Ty::Group => return None,
    })
}

fn fixed<const N: usize>(buf: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = buf.split_first_chunk::<N>()?;
    *buf = rest;
    Some(*head)
}

/// A base-128 varint of at most ten bytes, the tenth holding only the top
/// bit, as prost requires.
#[inline]
fn varint(buf: &mut &[u8]) -> Option<u64> {
    // Keys, lengths and small numbers are nearly always a single byte:
    // read those inline and leave longer ones to an out-of-line loop.
    if let Some((&b, rest)) = buf.split_first()
        && b < 0x80
    {
        *buf = rest;
        return Some(u64::from(b));
    }
    varint_long(buf)
}

#[inline(never)]
fn varint_long(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        if i == 9 && b > 1 {
            return None;
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

/// Record strings are mostly ASCII, which a word-at-a-time scan confirms
/// faster than full UTF-8 validation.
#[inline]
fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

fn take_len<'b>(buf: &mut &'b [u8]) -> Option<&'b [u8]> {
    let len = usize::try_from(varint(buf)?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Some(head)
}

/// Skips an unknown field; groups and invalid wire types are refused.
fn skip(wire_type: u8, buf: &mut &[u8]) -> bool {
    match wire_type {
        WT_VARINT => varint(buf).is_some(),
        WT_I64 => fixed::<8>(buf).is_some(),
        WT_LEN => take_len(buf).is_some(),
        WT_I32 => fixed::<4>(buf).is_some(),
        _ => false,
    }
}

impl RuleSet {
    /// `value` satisfies `rules`.
    fn passes(&self, rules: &TypeRules, value: &Value) -> bool {
        let mut checker = Checker {
            rules: self,
            path: String::new(),
            out: Vec::new(),
        };
        checker.value(rules, value);
        checker.out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use prost::Message as _;
    use prost_reflect::{DynamicMessage, MapKey};

    use super::*;
    use crate::validate::Violation;
    use crate::{CompiledSchema, compile};

    const BENCH: &str = r#"
        syntax = "proto3";
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

    /// Exercises the constructs the wire walk has to get right.
    const EDGES: &str = r#"
        syntax = "proto3";
        package edge;
        import "buf/validate/validate.proto";
        enum Color { COLOR_UNSPECIFIED = 0; COLOR_RED = 1; }
        message Leaf {
          int32 n = 1 [(buf.validate.field).int32.gte = 0];
          repeated sint32 xs = 2 [(buf.validate.field).repeated = {
            max_items: 3, items: { sint32: { lt: 50 } } }];
          string must = 3 [(buf.validate.field).required = true];
        }
        message Root {
          Leaf leaf = 1;
          oneof choice {
            string a = 2 [(buf.validate.field).required = true];
            int64 b = 3;
          }
          int32 positive = 4 [(buf.validate.field).int32.gt = 0];
          uint64 req = 5 [(buf.validate.field).required = true];
          map<int32, Leaf> leaves = 6 [(buf.validate.field).map = {
            min_pairs: 1, keys: { int32: { gte: 0 } } }];
          map<string, Color> colors = 7 [(buf.validate.field).map = {
            max_pairs: 2, values: { enum: { defined_only: true } } }];
          repeated fixed64 fx = 8 [(buf.validate.field).repeated.items.fixed64.lte = 9];
          optional float ratio = 9 [(buf.validate.field).float.finite = true];
          repeated Leaf many = 10;
          bytes blob = 11;
          sfixed32 s32 = 12 [(buf.validate.field).sfixed32.gt = -5];
          bool flag = 13;
          Color color = 14 [(buf.validate.field).enum.defined_only = true];
        }
        message Pairs {
          map<int32, int32> m = 1 [(buf.validate.field).map.min_pairs = 2];
        }
    "#;

    fn compiled(text: &str) -> CompiledSchema {
        compile(text, &BTreeMap::new()).unwrap()
    }

    fn message(schema: &CompiledSchema, name: &str) -> DynamicMessage {
        DynamicMessage::new(schema.pool().get_message_by_name(name).unwrap())
    }

    fn string(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    fn bench_order(schema: &CompiledSchema) -> DynamicMessage {
        let mut address = message(schema, "bench.Address");
        address.set_field_by_name("street", string("1600 Amphitheatre Parkway"));
        address.set_field_by_name("city", string("Mountain View"));
        address.set_field_by_name("zip", string("94043"));
        address.set_field_by_name("country", string("US"));
        let items = (0..8)
            .map(|i| {
                let mut item = message(schema, "bench.Item");
                item.set_field_by_name("sku", string(&format!("SKU-{i:05}")));
                item.set_field_by_name("quantity", Value::I32(i + 1));
                item.set_field_by_name("price", Value::F64(9.99 * f64::from(i + 1)));
                item.set_field_by_name("description", string(&"d".repeat(40)));
                Value::Message(item)
            })
            .collect();
        let tags = [("channel", "web"), ("region", "emea"), ("tier", "gold")]
            .into_iter()
            .map(|(k, v)| (MapKey::String(k.to_owned()), string(v)))
            .collect();
        let mut order = message(schema, "bench.Order");
        order.set_field_by_name("id", string("123e4567-e89b-12d3-a456-426614174000"));
        order.set_field_by_name("email", string("buyer@example.com"));
        order.set_field_by_name("shipping", Value::Message(address));
        order.set_field_by_name("items", Value::List(items));
        order.set_field_by_name("tags", Value::Map(tags));
        order.set_field_by_name("created_ms", Value::I64(1_700_000_000_000));
        order.set_field_by_name("note", string(&"n".repeat(150)));
        order
    }

    fn leaf(schema: &CompiledSchema, n: i32) -> DynamicMessage {
        let mut leaf = message(schema, "edge.Leaf");
        leaf.set_field_by_name("n", Value::I32(n));
        leaf.set_field_by_name("xs", Value::List(vec![Value::I32(-7), Value::I32(3)]));
        leaf.set_field_by_name("must", string("here"));
        leaf
    }

    fn edge_root(schema: &CompiledSchema) -> DynamicMessage {
        let mut root = message(schema, "edge.Root");
        root.set_field_by_name("leaf", Value::Message(leaf(schema, 1)));
        root.set_field_by_name("a", string("chosen"));
        root.set_field_by_name("positive", Value::I32(4));
        root.set_field_by_name("req", Value::U64(1));
        let leaves = [(0, 1), (5, 2)]
            .into_iter()
            .map(|(k, n)| (MapKey::I32(k), Value::Message(leaf(schema, n))))
            .collect();
        root.set_field_by_name("leaves", Value::Map(leaves));
        let colors = [(MapKey::String("x".to_owned()), Value::EnumNumber(1))]
            .into_iter()
            .collect();
        root.set_field_by_name("colors", Value::Map(colors));
        root.set_field_by_name("fx", Value::List(vec![Value::U64(1), Value::U64(9)]));
        root.set_field_by_name("ratio", Value::F32(0.5));
        root.set_field_by_name("many", Value::List(vec![Value::Message(leaf(schema, 2))]));
        root.set_field_by_name("blob", Value::Bytes(vec![1, 2, 3].into()));
        root.set_field_by_name("s32", Value::I32(-4));
        root.set_field_by_name("flag", Value::Bool(true));
        root.set_field_by_name("color", Value::EnumNumber(1));
        root
    }

    /// Runs both paths on `payload`, checks the wire walk never accepts
    /// what the full decode refuses, and returns whether it accepted.
    fn fast(rules: &RuleSet, desc: &MessageDescriptor, payload: &[u8]) -> bool {
        let accepted = rules.wire.accepts(desc, payload);
        let reference = rules.validate_decoded(desc, payload);
        if accepted {
            assert_eq!(reference, Ok(()), "wire walk accepted {payload:02x?}");
        }
        // Map entries are visited in hash order, so violations under a map
        // may come in any order from one decode to the next.
        let sorted = |r: Result<(), Vec<Violation>>| {
            r.map_err(|mut v| {
                v.sort_by(|a, b| (&a.field, &a.message).cmp(&(&b.field, &b.message)));
                v
            })
        };
        assert_eq!(sorted(rules.validate(desc, payload)), sorted(reference));
        accepted
    }

    fn setup(text: &str, name: &str) -> (CompiledSchema, RuleSet, MessageDescriptor) {
        let schema = compiled(text);
        let rules = RuleSet::build(schema.pool()).unwrap();
        let desc = schema.pool().get_message_by_name(name).unwrap();
        (schema, rules, desc)
    }

    #[test]
    fn valid_records_take_the_wire_path() {
        let (schema, rules, desc) = setup(BENCH, "bench.Order");
        assert!(fast(&rules, &desc, &bench_order(&schema).encode_to_vec()));

        let (schema, rules, desc) = setup(EDGES, "edge.Root");
        let root = edge_root(&schema);
        assert!(fast(&rules, &desc, &root.encode_to_vec()));
        // Unpacked encoding of a packable field is read too.
        let mut unpacked = root.encode_to_vec();
        unpacked.extend([8 << 3 | 1, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert!(fast(&rules, &desc, &unpacked));
        // Unknown fields are skipped.
        let mut unknown = root.encode_to_vec();
        // Field 15 (varint), field 99 (length-delimited), field 97 (fixed32).
        unknown.extend([
            15 << 3,
            0x96,
            0x01,
            0x9a,
            0x06,
            1,
            0xff,
            0x8d,
            0x06,
            1,
            2,
            3,
            4,
        ]);
        assert!(fast(&rules, &desc, &unknown));
    }

    #[test]
    fn wire_path_matches_reference_on_rule_edges() {
        let (schema, rules, desc) = setup(EDGES, "edge.Root");
        let base = edge_root(&schema);
        let mut cases: Vec<(usize, Vec<u8>, bool)> = Vec::new();
        let mut with = |f: &dyn Fn(&mut DynamicMessage)| {
            let mut m = base.clone();
            f(&mut m);
            let bytes = m.encode_to_vec();
            let valid = rules.validate_decoded(&desc, &bytes).is_ok();
            cases.push((cases.len(), bytes, valid));
        };
        with(&|m| m.set_field_by_name("b", Value::I64(3))); // required oneof member cleared
        with(&|m| m.set_field_by_name("a", string(""))); // still present
        with(&|m| m.clear_field_by_name("positive")); // default fails gt 0
        with(&|m| m.set_field_by_name("positive", Value::I32(-1)));
        with(&|m| m.clear_field_by_name("req"));
        with(&|m| m.clear_field_by_name("leaf")); // no rule on presence
        with(&|m| m.set_field_by_name("leaf", Value::Message(leaf(&schema, -1))));
        with(&|m| {
            let mut l = leaf(&schema, 1);
            l.clear_field_by_name("must");
            m.set_field_by_name("leaf", Value::Message(l));
        });
        with(&|m| {
            let mut l = leaf(&schema, 1);
            l.set_field_by_name("xs", Value::List(vec![Value::I32(50)]));
            m.set_field_by_name("many", Value::List(vec![Value::Message(l)]));
        });
        with(&|m| {
            let mut l = leaf(&schema, 1);
            let xs = (0..4).map(Value::I32).collect();
            l.set_field_by_name("xs", Value::List(xs));
            m.set_field_by_name("leaf", Value::Message(l));
        });
        with(&|m| {
            let leaves = [(MapKey::I32(-1), Value::Message(leaf(&schema, 1)))]
                .into_iter()
                .chain([(MapKey::I32(1), Value::Message(leaf(&schema, 1)))])
                .collect();
            m.set_field_by_name("leaves", Value::Map(leaves));
        });
        with(&|m| m.clear_field_by_name("leaves"));
        with(&|m| {
            let colors = (0..3)
                .map(|i| (MapKey::String(format!("k{i}")), Value::EnumNumber(1)))
                .collect();
            m.set_field_by_name("colors", Value::Map(colors));
        });
        with(&|m| {
            let colors = [(MapKey::String("k".to_owned()), Value::EnumNumber(9))]
                .into_iter()
                .collect();
            m.set_field_by_name("colors", Value::Map(colors));
        });
        with(&|m| m.set_field_by_name("fx", Value::List(vec![Value::U64(10)])));
        with(&|m| m.set_field_by_name("ratio", Value::F32(f32::INFINITY)));
        with(&|m| m.clear_field_by_name("ratio"));
        with(&|m| m.set_field_by_name("s32", Value::I32(-5)));
        with(&|m| m.set_field_by_name("color", Value::EnumNumber(2)));
        with(&|m| m.clear_field_by_name("color"));
        assert!(cases.iter().any(|(_, _, valid)| *valid));
        assert!(cases.iter().any(|(_, _, valid)| !*valid));
        for (case, bytes, valid) in &cases {
            assert_eq!(fast(&rules, &desc, bytes), *valid, "case {case}");
        }

        let encoded = base.encode_to_vec();
        let leaf_bytes = leaf(&schema, 1).encode_to_vec();
        let mut leaf_field = vec![1 << 3 | 2, leaf_bytes.len() as u8];
        leaf_field.extend(&leaf_bytes);
        // A singular message given twice is merged: left to the decoder,
        // which merges `xs` into four items (over max_items).
        let mut twice = encoded.clone();
        twice.extend(&leaf_field);
        twice.extend(&leaf_field);
        assert!(!fast(&rules, &desc, &twice));
        assert!(rules.validate(&desc, &twice).is_err());
        // Map entries repeating a key collapse below min_pairs; distinct
        // keys pass (by way of the decoder).
        let pairs = schema.pool().get_message_by_name("edge.Pairs").unwrap();
        let entry = |k: u8| [1 << 3 | 2, 4, 1 << 3, k, 2 << 3, 1];
        let dup = [entry(7), entry(7)].concat();
        assert!(!fast(&rules, &pairs, &dup));
        assert!(rules.validate(&pairs, &dup).is_err());
        let distinct = [entry(7), entry(8)].concat();
        assert!(!fast(&rules, &pairs, &distinct));
        assert_eq!(rules.validate(&pairs, &distinct), Ok(()));
        let mut root = base.clone();
        root.clear_field_by_name("leaves");
        // A map entry without its value holds an empty Leaf, missing `must`.
        let mut empty_value = root.encode_to_vec();
        for key in [1u8, 2] {
            empty_value.extend([6 << 3 | 2, 2, 1 << 3, key]);
        }
        assert!(!fast(&rules, &desc, &empty_value));
        assert!(rules.validate(&desc, &empty_value).is_err());
        // The last value of a singular scalar wins: an earlier bad one is
        // refused by the walk but accepted by the decoder.
        let mut overridden = encoded.clone();
        overridden.extend([4 << 3, 0x7f, 4 << 3, 3]);
        fast(&rules, &desc, &overridden);
        // An explicit zero for a required implicit field is absence.
        let mut zero = encoded;
        zero.extend([5 << 3, 0]);
        assert!(!fast(&rules, &desc, &zero));
        assert!(rules.validate(&desc, &zero).is_err());
    }

    #[test]
    fn keys_beyond_one_byte_take_the_general_path() {
        // Fields 1-15 are found from their one-byte key; 16 and up, and
        // numbers beyond the dense table, are looked up by number.
        const TEXT: &str = r#"
            syntax = "proto3";
            package far;
            import "buf/validate/validate.proto";
            message Far {
              int32 near = 15 [(buf.validate.field).int32.gt = 0];
              int32 mid = 16 [(buf.validate.field).int32.lt = 10];
              string far = 5000 [(buf.validate.field).string.max_len = 3];
              repeated uint32 packed = 7 [(buf.validate.field).repeated.items.uint32.lte = 5];
            }
        "#;
        let (schema, rules, desc) = setup(TEXT, "far.Far");
        let far = |near: i32, mid: i32, text: &str, packed: &[u32]| {
            let mut m = message(&schema, "far.Far");
            m.set_field_by_name("near", Value::I32(near));
            m.set_field_by_name("mid", Value::I32(mid));
            m.set_field_by_name("far", string(text));
            let packed = packed.iter().map(|&n| Value::U32(n)).collect();
            m.set_field_by_name("packed", Value::List(packed));
            m.encode_to_vec()
        };
        assert!(fast(&rules, &desc, &far(1, 9, "abc", &[1, 5])));
        assert!(!fast(&rules, &desc, &far(0, 9, "abc", &[1])));
        assert!(!fast(&rules, &desc, &far(1, 10, "abc", &[1])));
        assert!(!fast(&rules, &desc, &far(1, 9, "abcd", &[1])));
        assert!(!fast(&rules, &desc, &far(1, 9, "abc", &[1, 6])));
        // The same fields with other wire types are refused by both paths.
        let good = far(1, 9, "abc", &[1]);
        for extra in [
            &[15 << 3 | 2, 1, 0][..],
            // Field 16, fixed32: the key 16 << 3 | 5 takes two bytes.
            &[0x85, 0x01, 0, 0, 0, 0],
            &[7 << 3 | 5, 1, 0, 0, 0],
        ] {
            let payload = [&good[..], extra].concat();
            assert!(!fast(&rules, &desc, &payload), "{payload:02x?}");
            assert!(rules.validate(&desc, &payload).is_err());
        }
        // An unpacked item of the packed field is read one value at a time.
        let unpacked = [&good[..], &[7 << 3, 6]].concat();
        assert!(!fast(&rules, &desc, &unpacked));
        let unpacked = [&good[..], &[7 << 3, 2]].concat();
        assert!(fast(&rules, &desc, &unpacked));
    }

    #[test]
    fn pattern_rules_on_the_wire_path() {
        const TEXT: &str = r#"
            syntax = "proto3";
            package pat;
            import "buf/validate/validate.proto";
            message Code {
              string id = 1 [(buf.validate.field).string.pattern = "^[a-z]{2}\\d$"];
              map<string, string> labels = 2 [(buf.validate.field).map.keys.string.pattern = "^k"];
            }
        "#;
        let (schema, rules, desc) = setup(TEXT, "pat.Code");
        let code = |id: &str, key: &str| {
            let mut m = message(&schema, "pat.Code");
            m.set_field_by_name("id", string(id));
            let labels = [(MapKey::String(key.to_owned()), string("v"))]
                .into_iter()
                .collect();
            m.set_field_by_name("labels", Value::Map(labels));
            m.encode_to_vec()
        };
        assert!(fast(&rules, &desc, &code("ab1", "key")));
        assert!(!fast(&rules, &desc, &code("ab12", "key")));
        assert!(!fast(&rules, &desc, &code("ab1", "nokey")));
        // The empty default does not match, so a missing `id` is refused.
        let empty = message(&schema, "pat.Code").encode_to_vec();
        assert!(!fast(&rules, &desc, &empty));
        assert!(rules.validate(&desc, &empty).is_err());
    }

    #[test]
    fn malformed_wire_data_is_a_violation() {
        let (schema, rules, desc) = setup(EDGES, "edge.Root");
        let good = edge_root(&schema).encode_to_vec();
        let with = |extra: &[u8]| [&good[..], extra].concat();
        let bad: Vec<Vec<u8>> = vec![
            with(&[4 << 3, 0xff]), // truncated varint
            with(&[
                4 << 3,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0x7f,
            ]), // overlong varint
            with(&[2 << 3 | 2, 10, b'a']), // length past the end
            with(&[4 << 3 | 2, 1, 0]), // wrong wire type for int32
            with(&[1 << 3, 1]),    // varint for a message
            with(&[2 << 3 | 2, 2, 0xc3, 0x28]), // invalid UTF-8
            with(&[12 << 3 | 5, 1, 2]), // truncated fixed32
            with(&[4 << 3 | 3]),   // start group for int32
            with(&[4 << 3 | 4]),   // stray end group
            with(&[4 << 3 | 6, 0]), // invalid wire type
            with(&[0 << 3, 1]),    // field number 0
            with(&[0xff, 0xff, 0xff, 0xff, 0x7f, 0]), // key beyond u32
            with(&[8 << 3 | 2, 3, 1, 2, 3]), // packed fixed64 not a multiple of 8
            with(&[10 << 3 | 2, 2, 3 << 3 | 2, 5]), // nested length past its message
        ];
        for payload in &bad {
            assert!(!fast(&rules, &desc, payload), "{payload:02x?}");
            let violations = rules.validate(&desc, payload).unwrap_err();
            assert!(!violations.is_empty());
        }
        // A well-formed group in an unknown field decodes; the walk leaves
        // it to the decoder.
        let group = with(&[0x9b, 0x06, 15 << 3, 1, 0x9c, 0x06]);
        assert!(!fast(&rules, &desc, &group));
        assert_eq!(rules.validate(&desc, &group), Ok(()));
        let open_group = with(&[0x9b, 0x06, 15 << 3, 1]);
        assert!(rules.validate(&desc, &open_group).is_err());
        // Groups in the bench schema, at top level and nested.
        let (schema, rules, desc) = setup(BENCH, "bench.Order");
        let order = bench_order(&schema).encode_to_vec();
        for extra in [
            &[3u8 << 3 | 3][..],
            &[3 << 3 | 2, 2, 1 << 3 | 3, 1 << 3 | 4],
        ] {
            let payload = [&order[..], extra].concat();
            assert!(!fast(&rules, &desc, &payload));
        }
    }

    /// Deterministic xorshift, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn wire_path_never_accepts_what_decoding_refuses() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for (text, name) in [(BENCH, "bench.Order"), (EDGES, "edge.Root")] {
            let (schema, rules, desc) = setup(text, name);
            let base = if name == "bench.Order" {
                bench_order(&schema).encode_to_vec()
            } else {
                edge_root(&schema).encode_to_vec()
            };
            for len in 0..base.len() {
                fast(&rules, &desc, &base[..len]);
            }
            for _ in 0..4000 {
                let mut bytes = base.clone();
                for _ in 0..=(rng.next() % 3) {
                    let at = (rng.next() % bytes.len() as u64) as usize;
                    match rng.next() % 4 {
                        0 => bytes[at] = rng.next() as u8,
                        1 => bytes[at] ^= 1 << (rng.next() % 8),
                        2 => {
                            bytes.remove(at);
                        }
                        _ => bytes.insert(at, rng.next() as u8),
                    }
                    if bytes.is_empty() {
                        break;
                    }
                }
                fast(&rules, &desc, &bytes);
            }
            for _ in 0..2000 {
                let len = (rng.next() % 24) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                fast(&rules, &desc, &bytes);
            }
        }
    }

    #[test]
    #[ignore = "throughput measurement; run with --release -- --ignored --nocapture"]
    fn order_validation_throughput() {
        let (schema, rules, desc) = setup(BENCH, "bench.Order");
        let payload = bench_order(&schema).encode_to_vec();
        assert!(rules.wire.accepts(&desc, &payload));
        let measure = |label: &str, run: &dyn Fn() -> bool| {
            let n = 200_000u32;
            let start = Instant::now();
            let mut ok = 0u32;
            for _ in 0..n {
                ok += u32::from(std::hint::black_box(run()));
            }
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(ok, n);
            println!(
                "{label}: {:.0} records/s ({} byte record)",
                f64::from(n) / secs,
                payload.len()
            );
        };
        measure("full decode (previous)", &|| {
            rules
                .validate_decoded(&desc, std::hint::black_box(&payload))
                .is_ok()
        });
        measure("wire walk", &|| {
            schema
                .validate(&desc, std::hint::black_box(&payload))
                .is_ok()
        });
    }
}
