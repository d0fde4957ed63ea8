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

use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

/// Table property holding the JSON map from column path to field id.
pub const FIELD_IDS_PROPERTY: &str = "sluice.field-ids";

pub const COL_PARTITION: &str = "kafka_partition";
pub const COL_OFFSET: &str = "kafka_offset";
pub const COL_TIMESTAMP: &str = "kafka_timestamp";
pub const COL_KEY: &str = "kafka_key";
pub const COL_HEADERS: &str = "kafka_headers";
pub const COL_VALUE_BYTES: &str = "kafka_value";
pub const COL_VALUE: &str = "value";

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
const ID_VALUE: i32 = 10;
const LAST_FIXED_ID: i32 = ID_VALUE;

/// Messages nested deeper than this (recursive types) are kept as bytes.
const MAX_DEPTH: usize = 16;

/// Assigns field ids by column path, remembering every id handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIds {
    ids: BTreeMap<String, i32>,
    last: i32,
}

impl Default for FieldIds {
    fn default() -> FieldIds {
        FieldIds {
            ids: BTreeMap::new(),
            last: LAST_FIXED_ID,
        }
    }
}

impl FieldIds {
    /// Restores the map saved in the table property (empty for a new table).
    /// `last_column_id` is the table's highest id ever assigned.
    pub fn from_property(json: Option<&str>, last_column_id: i32) -> Result<FieldIds, String> {
        let ids: BTreeMap<String, i32> = match json {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| format!("table property {FIELD_IDS_PROPERTY} is not valid: {e}"))?,
            None => BTreeMap::new(),
        };
        let last = ids
            .values()
            .copied()
            .chain([last_column_id, LAST_FIXED_ID])
            .max()
            .unwrap_or(LAST_FIXED_ID);
        Ok(FieldIds { ids, last })
    }

    pub fn to_property(&self) -> String {
        serde_json::to_string(&self.ids).unwrap_or_else(|_| "{}".into())
    }

    fn id(&mut self, path: &str) -> i32 {
        if let Some(id) = self.ids.get(path) {
            return *id;
        }
        self.last += 1;
        self.ids.insert(path.to_string(), self.last);
        self.last
    }
}

/// The Iceberg schema of a topic's table. `message` is the value's message
/// type when the topic is schema-bound.
pub fn table_schema(
    message: Option<&MessageDescriptor>,
    ids: &mut FieldIds,
) -> Result<Schema, String> {
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
            .with_doc("Kafka record key")
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
    if let Some(message) = message {
        let value = message_struct(message, "value", ids, 0)?;
        fields.push(
            NestedField::optional(ID_VALUE, COL_VALUE, Type::Struct(value))
                .with_doc(format!("Decoded {}", message.full_name()))
                .into(),
        );
    }
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| format!("cannot build the table schema: {e}"))
}

fn message_struct(
    message: &MessageDescriptor,
    path: &str,
    ids: &mut FieldIds,
    depth: usize,
) -> Result<StructType, String> {
    let mut fields = Vec::new();
    for field in message.fields() {
        let field_path = format!("{path}.{}", field.number());
        let id = ids.id(&field_path);
        let ty = field_type(&field, &field_path, ids, depth)?;
        fields.push(NestedField::optional(id, field.name(), ty).into());
    }
    Ok(StructType::new(fields))
}

fn field_type(
    field: &FieldDescriptor,
    path: &str,
    ids: &mut FieldIds,
    depth: usize,
) -> Result<Type, String> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Err(format!("map field {} has no entry type", field.full_name()));
        };
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        let key_id = ids.id(&format!("{path}.key"));
        let value_path = format!("{path}.val");
        let value_id = ids.id(&value_path);
        let key_ty = single_type(&key, &format!("{path}.key"), ids, depth)?;
        let value_ty = single_type(&value, &value_path, ids, depth)?;
        return Ok(Type::Map(MapType::new(
            NestedField::map_key_element(key_id, key_ty).into(),
            NestedField::map_value_element(value_id, value_ty, false).into(),
        )));
    }
    if field.is_list() {
        let elem_path = format!("{path}.elem");
        let elem_id = ids.id(&elem_path);
        let elem_ty = single_type(field, &elem_path, ids, depth)?;
        return Ok(Type::List(ListType::new(
            NestedField::list_element(elem_id, elem_ty, false).into(),
        )));
    }
    single_type(field, path, ids, depth)
}

/// The type of one (non-repeated) value of `field`.
fn single_type(
    field: &FieldDescriptor,
    path: &str,
    ids: &mut FieldIds,
    depth: usize,
) -> Result<Type, String> {
    let p = |t| Ok(Type::Primitive(t));
    match field.kind() {
        Kind::Double => p(PrimitiveType::Double),
        Kind::Float => p(PrimitiveType::Float),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => p(PrimitiveType::Int),
        // Iceberg has no unsigned types: uint32 widens to long; uint64 and
        // fixed64 are stored as long (values above 2^63 wrap).
        Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64
        | Kind::Uint32
        | Kind::Fixed32
        | Kind::Uint64
        | Kind::Fixed64 => p(PrimitiveType::Long),
        Kind::Bool => p(PrimitiveType::Boolean),
        Kind::String | Kind::Enum(_) => p(PrimitiveType::String),
        Kind::Bytes => p(PrimitiveType::Binary),
        Kind::Message(m) => match well_known(&m) {
            Some(WellKnown::Timestamp) => p(PrimitiveType::Timestamptz),
            Some(WellKnown::Wrapper(inner)) => single_type(&inner, path, ids, depth),
            None if depth >= MAX_DEPTH => p(PrimitiveType::Binary),
            None => Ok(Type::Struct(message_struct(&m, path, ids, depth + 1)?)),
        },
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

    fn type_of(schema: &Schema, name: &str) -> String {
        let f = schema.field_by_name(name).unwrap();
        format!("{}:{}", f.id, f.field_type)
    }

    #[test]
    fn maps_protobuf_types_to_iceberg_types() {
        let mut ids = FieldIds::default();
        let schema = table_schema(Some(&order(V1)), &mut ids).unwrap();
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
        let v1 = table_schema(Some(&order(V1)), &mut ids).unwrap();
        let saved = ids.to_property();

        // Rename `email` to `mail` and add a field: the renamed column keeps
        // its id, the new one gets a fresh id above all earlier ones.
        let v2_text = V1
            .replace("string email = 1;", "string mail = 1; int32 age = 3;")
            .replace("Status status = 5;", "Status status = 5; string note = 8;");
        let mut restored = FieldIds::from_property(Some(&saved), v1.highest_field_id()).unwrap();
        let v2 = table_schema(Some(&order(&v2_text)), &mut restored).unwrap();
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
    fn recursive_messages_are_cut_off_as_bytes() {
        let text = r#"syntax = "proto3"; package shop;
            message Order { string id = 1; Order parent = 2; }"#;
        let mut ids = FieldIds::default();
        let schema = table_schema(Some(&order(text)), &mut ids).unwrap();
        assert!(schema.highest_field_id() < 100);
    }
}
