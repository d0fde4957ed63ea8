//! The table layout of a topic: which columns its Iceberg table has and
//! which Iceberg field id each column carries.
//!
//! Every table starts with the Kafka columns (fixed ids 1-9). A topic bound
//! to a Protobuf schema adds a `value` struct whose fields follow the message:
//! nested message → struct, repeated → list, map → map, enum → string,
//! `google.protobuf.Timestamp` → timestamptz, wrapper types → nullable
//! scalars.
//!
//! Field ids follow Protobuf field *numbers*, not names: each column is known
//! by its number path (`value.3.1`, `value.4.elem`, `value.5.key`…), and the
//! path → id map is kept in the table property [`FIELD_IDS_PROPERTY`]. A
//! renamed field (same number) keeps its id, so Iceberg sees a rename; a new
//! field gets an id above every id the table ever used, so ids are never
//! reused.

use std::collections::BTreeMap;
use std::sync::Arc;

use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

/// Table property holding the JSON map from column path to field id.
pub const FIELD_IDS_PROPERTY: &str = "sluice.field-ids";
/// Table property holding the JSON map from field id to the subject
/// versions that brought the column in and retired it ([`Lifetime`]).
pub const FIELD_HISTORY_PROPERTY: &str = "sluice.field-history";

pub const COL_PARTITION: &str = "kafka_partition";
pub const COL_OFFSET: &str = "kafka_offset";
pub const COL_TIMESTAMP: &str = "kafka_timestamp";
pub const COL_KEY: &str = "kafka_key";
pub const COL_HEADERS: &str = "kafka_headers";
pub const COL_VALUE_BYTES: &str = "kafka_value";
pub const COL_VALUE: &str = "value";
/// The decoded key, for topics with a key schema (its id is assigned like a
/// field's, as the column came after the fixed ones).
pub const COL_KEY_FIELDS: &str = "key";

/// Ids of the fixed Kafka columns (and the headers' nested fields).
pub const ID_PARTITION: i32 = 1;
pub const ID_OFFSET: i32 = 2;
pub const ID_TIMESTAMP: i32 = 3;
const ID_KEY: i32 = 4;
const ID_HEADERS: i32 = 5;
const ID_HEADER_ELEM: i32 = 6;
const ID_HEADER_KEY: i32 = 7;
const ID_HEADER_VALUE: i32 = 8;
const ID_VALUE_BYTES: i32 = 9;
pub const ID_VALUE: i32 = 10;
const LAST_FIXED_ID: i32 = ID_VALUE;

/// Marks the path of a column that its field left for a new one.
const RETIRED: char = '~';

/// Messages nested deeper than this (recursive types) are kept as bytes.
const MAX_DEPTH: usize = 16;

/// Assigns field ids by column path, remembering every id handed out and
/// which schema version brought each in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIds {
    ids: BTreeMap<String, i32>,
    last: i32,
    history: BTreeMap<i32, Lifetime>,
}

/// The subject versions a column lived through: the one whose message
/// first had its field, and the first one that no longer had it (the
/// column stays, for the rows written before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lifetime {
    /// Unknown for columns made before versions were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<i32>,
}

impl Default for FieldIds {
    fn default() -> FieldIds {
        FieldIds {
            ids: BTreeMap::new(),
            last: LAST_FIXED_ID,
            history: BTreeMap::new(),
        }
    }
}

impl FieldIds {
    /// Restores the maps saved in the table properties
    /// [`FIELD_IDS_PROPERTY`] and [`FIELD_HISTORY_PROPERTY`] (absent for a
    /// new table, and the history for tables made before it was kept).
    /// `last_column_id` is the table's highest id ever assigned.
    pub fn from_properties(
        properties: &std::collections::HashMap<String, String>,
        last_column_id: i32,
    ) -> Result<FieldIds, String> {
        let ids: BTreeMap<String, i32> = match properties.get(FIELD_IDS_PROPERTY) {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| format!("table property {FIELD_IDS_PROPERTY} is not valid: {e}"))?,
            None => BTreeMap::new(),
        };
        let history: BTreeMap<i32, Lifetime> = match properties.get(FIELD_HISTORY_PROPERTY) {
            Some(s) => serde_json::from_str(s).map_err(|e| {
                format!("table property {FIELD_HISTORY_PROPERTY} is not valid: {e}")
            })?,
            None => BTreeMap::new(),
        };
        let last = ids
            .values()
            .copied()
            .chain([last_column_id, LAST_FIXED_ID])
            .max()
            .unwrap_or(LAST_FIXED_ID);
        Ok(FieldIds { ids, last, history })
    }

    /// The table properties that keep this map.
    pub fn to_properties(&self) -> [(String, String); 2] {
        [
            (
                FIELD_IDS_PROPERTY.to_string(),
                serde_json::to_string(&self.ids).unwrap_or_else(|_| "{}".into()),
            ),
            (
                FIELD_HISTORY_PROPERTY.to_string(),
                serde_json::to_string(&self.history).unwrap_or_else(|_| "{}".into()),
            ),
        ]
    }

    /// The field number each struct field's id stands for (the last step
    /// of its path); list elements, map keys and values are left out.
    /// Columns that a field left behind (see [`FieldIds::forget`]) keep
    /// their number, so that records of the old versions still fill them.
    pub fn numbers(&self) -> std::collections::HashMap<i32, u32> {
        self.ids
            .iter()
            .filter_map(|(path, id)| {
                let last = path.rsplit('.').next()?;
                let number = last.split(RETIRED).next()?;
                number.parse::<u32>().ok().map(|n| (*id, n))
            })
            .collect()
    }

    /// The versions column `id` lived through, when they were recorded.
    pub fn lifetime(&self, id: i32) -> Option<Lifetime> {
        self.history.get(&id).copied()
    }

    /// Retires the ids of `path` and everything below it: the field's
    /// columns get new ids from now on (old ones are never reused), and
    /// the old ones stay recorded under `PATH~ID`, so the columns they
    /// name keep their field numbers.
    fn forget(&mut self, path: &str) {
        let Some(&id) = self.ids.get(path) else {
            return;
        };
        let below = format!("{path}.");
        let moved: Vec<(String, i32)> = self
            .ids
            .iter()
            .filter(|(p, _)| *p == path || p.starts_with(&below))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        let retired = format!("{path}{RETIRED}{id}");
        for (p, child) in moved {
            self.ids.remove(&p);
            self.ids
                .insert(format!("{retired}{}", &p[path.len()..]), child);
        }
    }

    /// The id of `path`, a new one if it has none; a new id is recorded as
    /// brought in by `version`.
    fn id(&mut self, path: &str, version: Option<i32>) -> i32 {
        if let Some(id) = self.ids.get(path) {
            return *id;
        }
        self.last += 1;
        self.ids.insert(path.to_string(), self.last);
        if let Some(version) = version {
            self.brought_in(self.last, version);
        }
        self.last
    }

    /// Records `version` as the one that brought in column `id`, unless
    /// an earlier one did.
    fn brought_in(&mut self, id: i32, version: i32) {
        self.history.entry(id).or_insert(Lifetime {
            since: Some(version),
            retired: None,
        });
    }

    /// Records whether `version` has the field of column `id`: the first
    /// version without it retires the column, one with it again brings it
    /// back.
    fn mark(&mut self, id: i32, version: Option<i32>, present: bool) {
        let Some(version) = version else { return };
        if present {
            if let Some(life) = self.history.get_mut(&id) {
                life.retired = None;
            }
            return;
        }
        let life = self.history.entry(id).or_insert(Lifetime {
            since: None,
            retired: None,
        });
        if life.retired.is_none() {
            life.retired = Some(version);
        }
    }
}

/// A message a decoded column (`value` or `key`) follows, and the subject
/// version it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Versioned<'a> {
    pub message: &'a MessageDescriptor,
    pub version: i32,
}

/// The Iceberg schema of a new topic table. `value` and `key` are the
/// messages of the topic's value and key schemas, when it has them.
pub fn table_schema(
    value: Option<Versioned<'_>>,
    key: Option<Versioned<'_>>,
    ids: &mut FieldIds,
) -> Result<Schema, String> {
    evolve_schema(value, key, ids, None).map(|(schema, _)| schema)
}

/// The schema a table moves to when its value or key message changes (a
/// new schema version), given the schema it has (`previous`):
///
/// - a new field is a new column; a renamed one (same number) keeps its id;
/// - a field no longer in the message (removed, `reserved`) stays, optional,
///   so its history stays readable: dropping it is an operator's decision;
/// - a number widened as Iceberg allows (int → long, float → double) is
///   promoted in place; a narrowed one keeps the wider column;
/// - any other change of a field's type (int32 → string, scalar ↔ message,
///   singular ↔ repeated) cannot be expressed: the old column stays as it
///   is, and the field continues in a new column (new id) named
///   `NAME_vN` (N is the subject version that made the change).
///
/// A `value` or `key` column stays once made, even when its subject goes
/// (new rows are null there). `ids` records which version brought in each
/// column and which retired it.
///
/// Returns the schema and a line per such incompatible change.
pub fn evolve_schema(
    value: Option<Versioned<'_>>,
    key: Option<Versioned<'_>>,
    ids: &mut FieldIds,
    previous: Option<&Schema>,
) -> Result<(Schema, Vec<String>), String> {
    let string = || Type::Primitive(PrimitiveType::String);
    let binary = || Type::Primitive(PrimitiveType::Binary);
    let header = StructType::new(vec![
        NestedField::required(ID_HEADER_KEY, "key", string()).into(),
        NestedField::optional(ID_HEADER_VALUE, "value", binary()).into(),
    ]);
    let mut fields: Vec<NestedFieldRef> = vec![
        NestedField::required(
            ID_PARTITION,
            COL_PARTITION,
            Type::Primitive(PrimitiveType::Int),
        )
        .with_doc("Kafka partition")
        .into(),
        NestedField::required(ID_OFFSET, COL_OFFSET, Type::Primitive(PrimitiveType::Long))
            .with_doc("Kafka offset")
            .into(),
        NestedField::required(
            ID_TIMESTAMP,
            COL_TIMESTAMP,
            Type::Primitive(PrimitiveType::Timestamptz),
        )
        .with_doc("Kafka record timestamp")
        .into(),
        NestedField::optional(ID_KEY, COL_KEY, binary())
            .with_doc("Kafka record key exactly as produced")
            .into(),
        NestedField::optional(
            ID_HEADERS,
            COL_HEADERS,
            Type::List(ListType::new(
                NestedField::list_element(ID_HEADER_ELEM, Type::Struct(header), true).into(),
            )),
        )
        .with_doc("Kafka record headers, in order")
        .into(),
        NestedField::optional(ID_VALUE_BYTES, COL_VALUE_BYTES, binary())
            .with_doc("Kafka record value exactly as produced")
            .into(),
    ];
    let mut notes = Vec::new();
    let sides = [
        (COL_VALUE, Some(ID_VALUE), value),
        (COL_KEY_FIELDS, ids.ids.get(COL_KEY_FIELDS).copied(), key),
    ];
    for (column, known_id, message) in sides {
        let before = known_id.and_then(|id| previous.and_then(|s| s.field_by_id(id)));
        let Some(Versioned { message, version }) = message else {
            // No message (the subject is gone): the column stays as it was.
            fields.extend(before.cloned());
            continue;
        };
        let id = match known_id {
            Some(id) => id,
            None => ids.id(column, Some(version)),
        };
        if before.is_none() {
            ids.brought_in(id, version);
        }
        let previous_struct = before.as_ref().and_then(|f| match &*f.field_type {
            Type::Struct(s) => Some(s),
            _ => None,
        });
        let mut deriver = Deriver {
            ids: &mut *ids,
            version: Some(version),
            tag: format!("v{version}"),
            notes: Vec::new(),
            conflict: false,
        };
        let fields_of = deriver.message_struct(message, column, previous_struct, 0)?;
        notes.extend(deriver.notes);
        let what = if column == COL_VALUE { "value" } else { "key" };
        fields.push(
            NestedField::optional(id, column, Type::Struct(fields_of))
                .with_doc(format!("Decoded {what}: {}", message.full_name()))
                .into(),
        );
    }
    let schema = Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| format!("cannot build the table schema: {e}"))?;
    Ok((schema, notes))
}

/// Derives column types from a message, reconciling them with the columns
/// the table had.
struct Deriver<'a> {
    ids: &'a mut FieldIds,
    /// The subject version being taken in (recorded with new columns).
    version: Option<i32>,
    /// Names the columns an incompatible change starts (`v3`).
    tag: String,
    notes: Vec<String>,
    /// Set when a derived type cannot replace the previous one.
    conflict: bool,
}

impl Deriver<'_> {
    fn message_struct(
        &mut self,
        message: &MessageDescriptor,
        path: &str,
        previous: Option<&StructType>,
        depth: usize,
    ) -> Result<StructType, String> {
        // (id, protobuf name, type, previous column of that id)
        let mut live = Vec::new();
        for field in message.fields() {
            let field_path = format!("{path}.{}", field.number());
            let mut id = self.ids.id(&field_path, self.version);
            let mut before = previous.and_then(|s| s.field_by_id(id));
            let outer = std::mem::replace(&mut self.conflict, false);
            let mut ty =
                self.field_type(&field, &field_path, before.map(|f| &*f.field_type), depth)?;
            if self.conflict {
                // The old column stays as it is (see below); the field goes
                // on under a new id.
                let old = before.map(|f| f.field_type.to_string()).unwrap_or_default();
                self.ids.forget(&field_path);
                id = self.ids.id(&field_path, self.version);
                before = None;
                self.conflict = false;
                ty = self.field_type(&field, &field_path, None, depth)?;
                self.notes.push(format!(
                    "field {} changed from {old} to {ty}, which Iceberg cannot express: its old values stay in the old column and new ones go to a new column",
                    field.full_name()
                ));
            }
            self.conflict = outer;
            self.ids.mark(id, self.version, true);
            live.push((id, field.name().to_string(), ty, before.cloned()));
        }
        let retired: Vec<NestedFieldRef> = previous
            .map(|s| {
                s.fields()
                    .iter()
                    .filter(|f| !live.iter().any(|(id, ..)| *id == f.id))
                    .map(|f| {
                        self.ids.mark(f.id, self.version, false);
                        let mut kept = f.as_ref().clone();
                        kept.required = false;
                        Arc::new(kept)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut fields: Vec<NestedFieldRef> = Vec::with_capacity(live.len() + retired.len());
        for (id, name, ty, before) in live {
            // A kept column holds the field's name: the field takes a
            // suffixed one (the same as before, once given).
            let name = if retired.iter().any(|r| r.name == name) {
                match before {
                    Some(b) if b.name.starts_with(&format!("{name}_")) => b.name.clone(),
                    _ => format!("{name}_{}", self.tag),
                }
            } else {
                name
            };
            fields.push(NestedField::optional(id, name, ty).into());
        }
        fields.extend(retired);
        Ok(StructType::new(fields))
    }

    fn field_type(
        &mut self,
        field: &FieldDescriptor,
        path: &str,
        previous: Option<&Type>,
        depth: usize,
    ) -> Result<Type, String> {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return Err(format!("map field {} has no entry type", field.full_name()));
            };
            let before = match previous {
                Some(Type::Map(m)) => Some(m),
                Some(_) => {
                    self.conflict = true;
                    None
                }
                None => None,
            };
            let key = entry.map_entry_key_field();
            let value = entry.map_entry_value_field();
            let key_path = format!("{path}.key");
            let key_id = self.ids.id(&key_path, self.version);
            let value_path = format!("{path}.val");
            let value_id = self.ids.id(&value_path, self.version);
            let key_ty = self.single_type(
                &key,
                &key_path,
                before.map(|m| &*m.key_field.field_type),
                depth,
            )?;
            let value_ty = self.single_type(
                &value,
                &value_path,
                before.map(|m| &*m.value_field.field_type),
                depth,
            )?;
            return Ok(Type::Map(MapType::new(
                NestedField::map_key_element(key_id, key_ty).into(),
                NestedField::map_value_element(value_id, value_ty, false).into(),
            )));
        }
        if field.is_list() {
            let before = match previous {
                Some(Type::List(l)) => Some(&*l.element_field.field_type),
                Some(_) => {
                    self.conflict = true;
                    None
                }
                None => None,
            };
            let elem_path = format!("{path}.elem");
            let elem_id = self.ids.id(&elem_path, self.version);
            let elem_ty = self.single_type(field, &elem_path, before, depth)?;
            return Ok(Type::List(ListType::new(
                NestedField::list_element(elem_id, elem_ty, false).into(),
            )));
        }
        if matches!(previous, Some(Type::List(_) | Type::Map(_))) {
            self.conflict = true;
            return self.single_type(field, path, None, depth);
        }
        self.single_type(field, path, previous, depth)
    }

    /// The type of one (non-repeated) value of `field`.
    fn single_type(
        &mut self,
        field: &FieldDescriptor,
        path: &str,
        previous: Option<&Type>,
        depth: usize,
    ) -> Result<Type, String> {
        let primitive = match field.kind() {
            Kind::Double => PrimitiveType::Double,
            Kind::Float => PrimitiveType::Float,
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => PrimitiveType::Int,
            // Iceberg has no unsigned types: uint32 widens to long; uint64
            // and fixed64 are stored as long (values above 2^63 wrap).
            Kind::Int64
            | Kind::Sint64
            | Kind::Sfixed64
            | Kind::Uint32
            | Kind::Fixed32
            | Kind::Uint64
            | Kind::Fixed64 => PrimitiveType::Long,
            Kind::Bool => PrimitiveType::Boolean,
            Kind::String | Kind::Enum(_) => PrimitiveType::String,
            Kind::Bytes => PrimitiveType::Binary,
            Kind::Message(m) => match well_known(&m) {
                Some(WellKnown::Timestamp) => PrimitiveType::Timestamptz,
                Some(WellKnown::Wrapper(inner)) => {
                    return self.single_type(&inner, path, previous, depth);
                }
                None if depth >= MAX_DEPTH => PrimitiveType::Binary,
                None => {
                    let before = match previous {
                        Some(Type::Struct(s)) => Some(s),
                        Some(_) => {
                            self.conflict = true;
                            None
                        }
                        None => None,
                    };
                    let nested = self.message_struct(&m, path, before, depth + 1)?;
                    return Ok(Type::Struct(nested));
                }
            },
        };
        Ok(Type::Primitive(match previous {
            None => primitive,
            Some(Type::Primitive(old)) => match reconcile(old, &primitive) {
                Some(t) => t,
                None => {
                    self.conflict = true;
                    primitive
                }
            },
            Some(_) => {
                self.conflict = true;
                primitive
            }
        }))
    }
}

/// The column type for a field that was `old` and is now `new`, when one
/// column can hold both: Iceberg's promotions (int → long, float → double),
/// and the wider type kept when a field narrows.
fn reconcile(old: &PrimitiveType, new: &PrimitiveType) -> Option<PrimitiveType> {
    use PrimitiveType::{Double, Float, Int, Long};
    match (old, new) {
        (a, b) if a == b => Some(b.clone()),
        (Int, Long) | (Long, Int) => Some(Long),
        (Float, Double) | (Double, Float) => Some(Double),
        _ => None,
    }
}

/// Well-known message types that map to a scalar column.
pub(crate) enum WellKnown {
    Timestamp,
    /// `google.protobuf.*Value`: the wrapped field (number 1).
    Wrapper(FieldDescriptor),
}

pub(crate) fn well_known(message: &MessageDescriptor) -> Option<WellKnown> {
    match message.full_name() {
        "google.protobuf.Timestamp" => Some(WellKnown::Timestamp),
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => message.get_field(1).map(WellKnown::Wrapper),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::CompiledSchema;

    const V1: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        import "google/protobuf/wrappers.proto";
        message Order {
          string id = 1;
          Customer customer = 2;
          repeated Item items = 3;
          map<string, int64> counts = 4;
          Status status = 5;
          google.protobuf.Timestamp placed_at = 6;
          google.protobuf.Int32Value coupon = 7;
        }
        message Customer { string email = 1; string name = 2; }
        message Item { string sku = 1; int32 qty = 2; }
        enum Status { NEW = 0; PAID = 1; }
    "#;

    fn order(text: &str) -> MessageDescriptor {
        let schema = CompiledSchema::compile(text, &std::collections::BTreeMap::new()).unwrap();
        schema.pool().get_message_by_name("shop.Order").unwrap()
    }

    fn at(message: &MessageDescriptor, version: i32) -> Option<Versioned<'_>> {
        Some(Versioned { message, version })
    }

    fn type_of(schema: &Schema, name: &str) -> String {
        let f = schema.field_by_name(name).unwrap();
        format!("{}:{}", f.id, f.field_type)
    }

    #[test]
    fn maps_protobuf_types_to_iceberg_types() {
        let mut ids = FieldIds::default();
        let schema = table_schema(at(&order(V1), 1), None, &mut ids).unwrap();
        assert_eq!(type_of(&schema, "kafka_timestamp"), "3:timestamptz");
        assert_eq!(type_of(&schema, "value.id"), "11:string");
        assert_eq!(type_of(&schema, "value.customer.email"), "13:string");
        assert_eq!(type_of(&schema, "value.status"), "22:string");
        assert_eq!(type_of(&schema, "value.placed_at"), "23:timestamptz");
        assert_eq!(type_of(&schema, "value.coupon"), "24:int");
        let items = schema.field_by_name("value.items").unwrap();
        assert!(matches!(*items.field_type, Type::List(_)));
        let counts = schema.field_by_name("value.counts").unwrap();
        assert!(matches!(*counts.field_type, Type::Map(_)));
    }

    #[test]
    fn ids_follow_field_numbers_across_renames_and_additions() {
        let mut ids = FieldIds::default();
        let v1 = table_schema(at(&order(V1), 1), None, &mut ids).unwrap();
        let saved = std::collections::HashMap::from(ids.to_properties());

        // Rename `email` to `mail` and add a field: the renamed column keeps
        // its id, the new one gets a fresh id above all earlier ones.
        let v2_text = V1
            .replace("string email = 1;", "string mail = 1; int32 age = 3;")
            .replace("Status status = 5;", "Status status = 5; string note = 8;");
        let mut restored = FieldIds::from_properties(&saved, v1.highest_field_id()).unwrap();
        let v2 = table_schema(at(&order(&v2_text), 2), None, &mut restored).unwrap();
        let email_id = v1.field_by_name("value.customer.email").unwrap().id;
        assert_eq!(
            v2.field_by_name("value.customer.mail").unwrap().id,
            email_id
        );
        let new_ids = [
            v2.field_by_name("value.customer.age").unwrap().id,
            v2.field_by_name("value.note").unwrap().id,
        ];
        assert!(new_ids.iter().all(|id| *id > v1.highest_field_id()));
        assert_ne!(new_ids[0], new_ids[1]);
        // Everything else is unchanged.
        assert_eq!(
            v1.field_by_name("value.items.element.qty").unwrap().id,
            v2.field_by_name("value.items.element.qty").unwrap().id
        );
    }

    #[test]
    fn removed_fields_stay_and_incompatible_changes_start_a_new_column() {
        let mut ids = FieldIds::default();
        let v1 = table_schema(at(&order(V1), 1), None, &mut ids).unwrap();
        // v2: `id` (1) becomes a number, `coupon` (7) is reserved, the
        // customer's `name` (2) is removed, `status` widens nothing.
        let v2_text = V1
            .replace("string id = 1;", "int64 id = 1;")
            .replace("google.protobuf.Int32Value coupon = 7;", "reserved 7;")
            .replace("string name = 2;", "");
        let (v2, notes) =
            evolve_schema(at(&order(&v2_text), 2), None, &mut ids, Some(&v1)).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("shop.Order.id"), "{notes:?}");
        // The old columns keep their ids and names; the changed field goes on
        // in a new column.
        assert_eq!(type_of(&v2, "value.id"), type_of(&v1, "value.id"));
        assert_eq!(type_of(&v2, "value.coupon"), type_of(&v1, "value.coupon"));
        assert_eq!(
            type_of(&v2, "value.customer.name"),
            type_of(&v1, "value.customer.name")
        );
        let new_id = v2.field_by_name("value.id_v2").unwrap();
        assert!(new_id.id > v1.highest_field_id());
        assert_eq!(new_id.field_type.to_string(), "long");
        // The numbers of the ids: both columns stand for field 1 (records of
        // each version fill the column their type fits), and the field's
        // path now names the new column.
        let numbers = ids.numbers();
        assert_eq!(numbers.get(&new_id.id), Some(&1));
        let old_id = v1.field_by_name("value.id").unwrap().id;
        assert_eq!(numbers.get(&old_id), Some(&1));
        let restored =
            FieldIds::from_properties(&std::collections::HashMap::from(ids.to_properties()), 0)
                .unwrap();
        assert_eq!(restored, ids);

        // v3 keeps the same shape: nothing moves again, names stay.
        let (v3, notes) =
            evolve_schema(at(&order(&v2_text), 3), None, &mut ids, Some(&v2)).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(type_of(&v3, "value.id_v2"), type_of(&v2, "value.id_v2"));
        assert_eq!(type_of(&v3, "value.id"), type_of(&v2, "value.id"));
    }

    #[test]
    fn numbers_widen_in_place_and_keep_the_wider_type() {
        let text = r#"syntax = "proto3"; package shop;
            message Order { int32 qty = 1; float price = 2; int64 total = 3; }"#;
        let mut ids = FieldIds::default();
        let v1 = table_schema(at(&order(text), 1), None, &mut ids).unwrap();
        let widened = text
            .replace("int32 qty", "int64 qty")
            .replace("float price", "double price")
            .replace("int64 total", "int32 total");
        let (v2, notes) =
            evolve_schema(at(&order(&widened), 2), None, &mut ids, Some(&v1)).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let qty_id = v1.field_by_name("value.qty").unwrap().id;
        assert_eq!(type_of(&v2, "value.qty"), format!("{qty_id}:long"));
        assert!(type_of(&v2, "value.price").ends_with(":double"));
        assert!(type_of(&v2, "value.total").ends_with(":long"));
    }

    #[test]
    fn recursive_messages_are_cut_off_as_bytes() {
        let text = r#"syntax = "proto3"; package shop;
            message Order { string id = 1; Order parent = 2; }"#;
        let mut ids = FieldIds::default();
        let schema = table_schema(at(&order(text), 1), None, &mut ids).unwrap();
        assert!(schema.highest_field_id() < 100);
    }

    #[test]
    fn columns_remember_the_versions_that_brought_them_in_and_retired_them() {
        let mut ids = FieldIds::default();
        let v1 = table_schema(at(&order(V1), 1), None, &mut ids).unwrap();
        let v2_text = V1.replace(
            "google.protobuf.Int32Value coupon = 7;",
            "reserved 7; string note = 8;",
        );
        let (v2, _) = evolve_schema(at(&order(&v2_text), 2), None, &mut ids, Some(&v1)).unwrap();
        let life = |ids: &FieldIds, schema: &Schema, name: &str| {
            ids.lifetime(schema.field_by_name(name).unwrap().id)
        };
        let since = |v| {
            Some(Lifetime {
                since: Some(v),
                retired: None,
            })
        };
        assert_eq!(life(&ids, &v2, "value"), since(1));
        assert_eq!(life(&ids, &v2, "value.id"), since(1));
        assert_eq!(life(&ids, &v2, "value.customer.email"), since(1));
        assert_eq!(life(&ids, &v2, "value.note"), since(2));
        assert_eq!(
            life(&ids, &v2, "value.coupon"),
            Some(Lifetime {
                since: Some(1),
                retired: Some(2)
            })
        );
        // Kept across a save, and a field that comes back is live again.
        let mut ids = FieldIds::from_properties(
            &std::collections::HashMap::from(ids.to_properties()),
            v2.highest_field_id(),
        )
        .unwrap();
        let (v3, _) = evolve_schema(at(&order(V1), 3), None, &mut ids, Some(&v2)).unwrap();
        assert_eq!(life(&ids, &v3, "value.coupon"), since(1));
        assert_eq!(
            life(&ids, &v3, "value.note"),
            Some(Lifetime {
                since: Some(2),
                retired: Some(3)
            })
        );
        // Kafka's own columns have no version.
        assert_eq!(life(&ids, &v3, "kafka_offset"), None);
    }

    #[test]
    fn a_key_schema_adds_a_key_column_that_stays() {
        let key_text = r#"syntax = "proto3"; package shop;
            message Order { string tenant = 1; int64 number = 2; }"#;
        let key = order(key_text);
        let mut ids = FieldIds::default();
        let v1 = table_schema(at(&order(V1), 1), None, &mut ids).unwrap();
        assert!(v1.field_by_name("key").is_none());
        let (with_key, notes) =
            evolve_schema(at(&order(V1), 1), at(&key, 1), &mut ids, Some(&v1)).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let column = with_key.field_by_name("key").unwrap();
        assert!(column.id > v1.highest_field_id());
        assert!(matches!(*column.field_type, Type::Struct(_)));
        assert!(type_of(&with_key, "key.tenant").ends_with(":string"));
        assert!(type_of(&with_key, "key.number").ends_with(":long"));
        // The value's columns are untouched by the key's.
        assert_eq!(type_of(&with_key, "value.id"), type_of(&v1, "value.id"));
        // The key's fields are known by number, as the value's are.
        let number = with_key.field_by_name("key.number").unwrap().id;
        assert_eq!(ids.numbers().get(&number), Some(&2));
        // Without a key schema any more, the column and its ids stay.
        let (after, _) = evolve_schema(at(&order(V1), 2), None, &mut ids, Some(&with_key)).unwrap();
        assert_eq!(
            type_of(&after, "key.number"),
            type_of(&with_key, "key.number")
        );
    }
}
