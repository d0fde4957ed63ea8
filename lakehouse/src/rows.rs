//! Kafka records → Arrow record batches in a table's layout.
//!
//! Values (and keys, for topics with a key schema) are decoded once with
//! the table's message type and turned into columns field by field
//! (column-at-a-time, so nested structs, lists and maps are built with one
//! pass over their children). A value that is not of the table's message
//! (its framing names another message) or does not decode keeps its bytes
//! in `kafka_value` with a null `value`, and is reported in [`Undecoded`]
//! so that the caller can say so; keys likewise with `kafka_key` and `key`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use prost_reflect::ReflectMessage;

use arrow_array::builder::{
    BinaryBuilder, LargeBinaryBuilder, ListBuilder, StringBuilder, StructBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, LargeBinaryArray,
    ListArray, MapArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, SchemaRef, TimeUnit};
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};

use crate::layout::{WellKnown, well_known};

/// How a topic's values (or keys) are encoded.
#[derive(Debug, Clone)]
pub struct MessageFormat {
    /// The message the table's `value` (or `key`) column holds, as the
    /// subject's latest version declares it.
    pub message: MessageDescriptor,
    pub framing: Framing,
    /// The subject version `message` comes from (names columns that an
    /// incompatible change had to start anew).
    pub schema_version: i32,
    /// The same message in every version of the subject that declares it,
    /// oldest first, ending with `message` itself: the table's columns
    /// take in each version in turn, so that fields of versions the table
    /// never saw as the latest (its records were archived later) have
    /// columns too.
    pub history: Arc<Vec<(i32, MessageDescriptor)>>,
}

/// The Protobuf field number each struct column's field id stands for.
pub type FieldNumbers = HashMap<i32, u32>;

/// How a value names its message.
#[derive(Debug, Clone)]
pub enum Framing {
    /// Unframed Protobuf: every value is of the table's message.
    Raw,
    /// Confluent framing (magic byte, schema id, message indexes) in
    /// front. Lists the message each (schema id, message indexes) seen
    /// names; only values framed as the table's message (by full name) are
    /// decoded into `value`, each with the message as its own schema
    /// version declares it. (A handful of entries: a list is searched
    /// faster than a map could hash a key.)
    Confluent(Arc<Vec<FramedAs>>),
}

/// What one framing names: (schema id, message indexes) → message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedAs {
    pub schema_id: u32,
    pub message_indexes: Vec<i32>,
    pub message: MessageDescriptor,
}

/// Values that were left out of the `value` column (null there, their
/// bytes kept in `kafka_value`), or keys left out of `key`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undecoded {
    pub count: usize,
    /// The first one: partition, offset and why.
    pub first: Option<(i32, i64, String)>,
}

impl Undecoded {
    fn add(&mut self, row: &KafkaRow<'_>, reason: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some((row.partition, row.offset, reason()));
        }
    }
}

/// One Kafka record to turn into a row.
#[derive(Debug, Clone)]
pub struct KafkaRow<'a> {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// How a topic's records are encoded: its values, and its keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Formats<'a> {
    pub value: Option<&'a MessageFormat>,
    pub key: Option<&'a MessageFormat>,
}

/// What could not be decoded into the `value` and `key` columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    pub values: Undecoded,
    pub keys: Undecoded,
}

/// Builds one Arrow batch from rows given in (partition, offset) order,
/// and tells which values and keys could not be decoded into `value` and
/// `key`. A decoded column whose topic has no schema (any more) is null.
pub fn to_record_batch(
    schema: &SchemaRef,
    formats: Formats<'_>,
    numbers: &FieldNumbers,
    rows: &[KafkaRow<'_>],
) -> Result<(RecordBatch, Skipped), String> {
    let mut skipped = Skipped::default();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column: ArrayRef = match field.name().as_str() {
            crate::layout::COL_PARTITION => {
                Arc::new(rows.iter().map(|r| r.partition).collect::<Int32Array>())
            }
            crate::layout::COL_OFFSET => {
                Arc::new(rows.iter().map(|r| r.offset).collect::<Int64Array>())
            }
            crate::layout::COL_TIMESTAMP => Arc::new(timestamps(field, rows)?),
            crate::layout::COL_KEY => binary_column(field, rows.iter().map(|r| r.key))?,
            crate::layout::COL_VALUE_BYTES => binary_column(field, rows.iter().map(|r| r.value))?,
            crate::layout::COL_HEADERS => headers_column(field, rows)?,
            crate::layout::COL_VALUE => decoded_column(
                field,
                formats.value,
                numbers,
                rows,
                Side::Value,
                &mut skipped.values,
            )?,
            crate::layout::COL_KEY_FIELDS => decoded_column(
                field,
                formats.key,
                numbers,
                rows,
                Side::Key,
                &mut skipped.keys,
            )?,
            other => return Err(format!("unknown column {other}")),
        };
        columns.push(column);
    }
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| format!("cannot assemble rows: {e}"))?;
    Ok((batch, skipped))
}

/// Which part of a record a decoded column holds.
#[derive(Debug, Clone, Copy)]
enum Side {
    Value,
    Key,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Value => "value",
            Side::Key => "key",
        }
    }

    fn of<'a>(self, row: &KafkaRow<'a>) -> Option<&'a [u8]> {
        match self {
            Side::Value => row.value,
            Side::Key => row.key,
        }
    }
}

/// The `value` or `key` column: each record's bytes decoded with
/// `format`, null where they do not decode (counted in `undecoded`), and
/// null throughout without a format.
fn decoded_column(
    field: &Field,
    format: Option<&MessageFormat>,
    numbers: &FieldNumbers,
    rows: &[KafkaRow<'_>],
    side: Side,
    undecoded: &mut Undecoded,
) -> Result<ArrayRef, String> {
    let DataType::Struct(fields) = field.data_type() else {
        return Err(format!("the {} column is not a struct", side.name()));
    };
    let Some(format) = format else {
        return Ok(arrow_array::new_null_array(field.data_type(), rows.len()));
    };
    let decoded: Vec<Option<DynamicMessage>> = rows
        .iter()
        .map(|r| match decode(format, side.of(r), side) {
            Ok(m) => m,
            Err(reason) => {
                undecoded.add(r, || reason);
                None
            }
        })
        .collect();
    let refs: Vec<Option<&DynamicMessage>> = decoded.iter().map(|m| m.as_ref()).collect();
    struct_array(&refs, &format.message, fields, numbers)
}

/// The bytes as the table's message; `Ok(None)` for null, `Err` says why
/// they are not one.
fn decode(
    format: &MessageFormat,
    bytes: Option<&[u8]>,
    side: Side,
) -> Result<Option<DynamicMessage>, String> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let side = side.name();
    let table_message = format.message.full_name();
    let (payload, message) = match &format.framing {
        Framing::Raw => (bytes, &format.message),
        Framing::Confluent(names) => {
            let frame = sluice_proto::decode_frame(bytes)
                .map_err(|e| format!("{side} is not in the schema registry wire format: {e}"))?;
            let named = names.iter().find(|f| {
                f.schema_id == frame.schema_id && frame.message_indexes == f.message_indexes
            });
            match named.map(|f| &f.message) {
                Some(message) if message.full_name() == table_message => (frame.payload, message),
                Some(message) => {
                    return Err(format!(
                        "{side} is a {} (schema id {}), the table holds {table_message}",
                        message.full_name(),
                        frame.schema_id
                    ));
                }
                None => {
                    return Err(format!(
                        "{side} names message {:?} of schema id {}, which cannot be resolved",
                        frame.message_indexes.as_slice(),
                        frame.schema_id
                    ));
                }
            }
        }
    };
    DynamicMessage::decode(message.clone(), payload)
        .map(Some)
        .map_err(|e| format!("{side} does not decode as {table_message}: {e}"))
}

fn timestamps(field: &Field, rows: &[KafkaRow<'_>]) -> Result<TimestampMicrosecondArray, String> {
    let DataType::Timestamp(TimeUnit::Microsecond, tz) = field.data_type() else {
        return Err(format!("unexpected timestamp type {}", field.data_type()));
    };
    let array: TimestampMicrosecondArray = rows
        .iter()
        .map(|r| Some(r.timestamp_ms.saturating_mul(1000)))
        .collect();
    Ok(array.with_timezone_opt(tz.clone()))
}

fn binary_column<'a>(
    field: &Field,
    values: impl Iterator<Item = Option<&'a [u8]>>,
) -> Result<ArrayRef, String> {
    match field.data_type() {
        DataType::LargeBinary => Ok(Arc::new(values.collect::<LargeBinaryArray>())),
        DataType::Binary => Ok(Arc::new(values.collect::<arrow_array::BinaryArray>())),
        other => Err(format!("unexpected binary type {other}")),
    }
}

fn headers_column(field: &Field, rows: &[KafkaRow<'_>]) -> Result<ArrayRef, String> {
    let DataType::List(element) = field.data_type() else {
        return Err("kafka_headers is not a list".into());
    };
    let DataType::Struct(fields) = element.data_type() else {
        return Err("kafka_headers element is not a struct".into());
    };
    let large = matches!(fields[1].data_type(), DataType::LargeBinary);
    let value_builder: Box<dyn arrow_array::builder::ArrayBuilder> = if large {
        Box::new(LargeBinaryBuilder::new())
    } else {
        Box::new(BinaryBuilder::new())
    };
    let entries = StructBuilder::new(
        fields.clone(),
        vec![Box::new(StringBuilder::new()), value_builder],
    );
    let mut list = ListBuilder::new(entries).with_field(element.clone());
    for row in rows {
        let entries = list.values();
        for (key, value) in &row.headers {
            entries
                .field_builder::<StringBuilder>(0)
                .ok_or("header key builder")?
                .append_value(String::from_utf8_lossy(key));
            if large {
                entries
                    .field_builder::<LargeBinaryBuilder>(1)
                    .ok_or("header value builder")?
                    .append_option(*value);
            } else {
                entries
                    .field_builder::<BinaryBuilder>(1)
                    .ok_or("header value builder")?
                    .append_option(*value);
            }
            entries.append(true);
        }
        list.append(true);
    }
    Ok(Arc::new(list.finish()))
}

type Slot<'a> = Option<Cow<'a, Value>>;

/// Columns are matched to fields by field id → field number, so a column
/// keeps its values whatever the field is called now. Each message is read
/// with its own descriptor (rows of one batch may come from different
/// schema versions), and a field fills a column only if its type fits the
/// column's: after a change Iceberg cannot express, the old column takes
/// the old-typed values and the new column the new ones. A column whose
/// field a message lacks (removed, or not yet added) is null for it.
fn struct_array(
    messages: &[Option<&DynamicMessage>],
    descriptor: &MessageDescriptor,
    fields: &Fields,
    numbers: &FieldNumbers,
) -> Result<ArrayRef, String> {
    // The distinct descriptors among the messages (one per schema version
    // at most; usually one), the table's own first.
    let mut descriptors: Vec<MessageDescriptor> = vec![descriptor.clone()];
    for m in messages.iter().flatten() {
        if !descriptors.contains(&m.descriptor()) {
            descriptors.push(m.descriptor());
        }
    }
    let mut children = Vec::with_capacity(fields.len());
    for arrow_field in fields {
        let number = arrow_field
            .metadata()
            .get(parquet::arrow::PARQUET_FIELD_ID_META_KEY)
            .and_then(|id| id.parse::<i32>().ok())
            .and_then(|id| numbers.get(&id))
            .copied();
        let ty = arrow_field.data_type();
        let lookup = |d: &MessageDescriptor| {
            match number {
                Some(n) => d.get_field(n),
                // A table written before ids were recorded: by name.
                None if numbers.is_empty() => d.get_field_by_name(arrow_field.name()),
                None => None,
            }
            .filter(|f| fits(f, ty))
        };
        // The field as each descriptor declares it, if it fits the column.
        let declared: Vec<Option<FieldDescriptor>> = descriptors.iter().map(lookup).collect();
        let Some(field) = declared.iter().flatten().next().cloned() else {
            children.push(arrow_array::new_null_array(ty, messages.len()));
            continue;
        };
        let slots: Vec<Slot<'_>> = messages
            .iter()
            .map(|m| {
                let m = (*m)?;
                let d = m.descriptor();
                let at = descriptors.iter().position(|x| *x == d)?;
                field_slot(m, declared[at].as_ref()?)
            })
            .collect();
        children.push(field_array(
            &field,
            arrow_field.data_type(),
            &slots,
            numbers,
        )?);
    }
    let nulls = NullBuffer::from(messages.iter().map(|m| m.is_some()).collect::<Vec<_>>());
    let array = if fields.is_empty() {
        StructArray::new_empty_fields(messages.len(), Some(nulls))
    } else {
        StructArray::try_new(fields.clone(), children, Some(nulls))
            .map_err(|e| format!("cannot build {}: {e}", descriptor.full_name()))?
    };
    Ok(Arc::new(array))
}

/// The value of `field` in `message`; `None` for an absent field that has
/// presence (optional scalars, messages), the default otherwise.
fn field_slot<'a>(message: &'a DynamicMessage, field: &FieldDescriptor) -> Slot<'a> {
    if !field.is_list() && !field.is_map() && field.supports_presence() && !message.has_field(field)
    {
        return None;
    }
    Some(message.get_field(field))
}

/// Whether values of `field` belong in a column of type `ty` (as the
/// layout derives it, or wider).
fn fits(field: &FieldDescriptor, ty: &DataType) -> bool {
    if field.is_map() {
        return matches!(ty, DataType::Map(..));
    }
    if field.is_list() {
        return match ty {
            DataType::List(element) => kind_fits(&field.kind(), element.data_type()),
            _ => false,
        };
    }
    kind_fits(&field.kind(), ty)
}

fn kind_fits(kind: &Kind, ty: &DataType) -> bool {
    match kind {
        Kind::Message(message) => match well_known(message) {
            Some(WellKnown::Timestamp) => matches!(ty, DataType::Timestamp(..)),
            Some(WellKnown::Wrapper(inner)) => kind_fits(&inner.kind(), ty),
            // A struct, or the encoding beyond the nesting limit.
            None => matches!(ty, DataType::Struct(_) | DataType::LargeBinary),
        },
        Kind::Bool => matches!(ty, DataType::Boolean),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            matches!(ty, DataType::Int32 | DataType::Int64)
        }
        Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64
        | Kind::Uint32
        | Kind::Fixed32
        | Kind::Uint64
        | Kind::Fixed64 => matches!(ty, DataType::Int64),
        Kind::Float => matches!(ty, DataType::Float32 | DataType::Float64),
        Kind::Double => matches!(ty, DataType::Float64),
        Kind::String | Kind::Enum(_) => matches!(ty, DataType::Utf8),
        Kind::Bytes => matches!(ty, DataType::LargeBinary | DataType::Binary),
    }
}

fn field_array(
    field: &FieldDescriptor,
    ty: &DataType,
    slots: &[Slot<'_>],
    numbers: &FieldNumbers,
) -> Result<ArrayRef, String> {
    if field.is_map() {
        return map_array(field, ty, slots, numbers);
    }
    if field.is_list() {
        let DataType::List(element) = ty else {
            return Err(format!("{} should be a list column", field.full_name()));
        };
        let mut offsets = vec![0i32];
        let mut items: Vec<Slot<'_>> = Vec::new();
        for slot in slots {
            if let Some(Value::List(values)) = slot.as_deref() {
                items.extend(values.iter().map(|v| Some(Cow::Borrowed(v))));
            }
            offsets.push(items.len() as i32);
        }
        let values = single_array(&field.kind(), element.data_type(), &items, numbers)?;
        let nulls = NullBuffer::from(slots.iter().map(|s| s.is_some()).collect::<Vec<_>>());
        let list = ListArray::try_new(
            element.clone(),
            OffsetBuffer::new(offsets.into()),
            values,
            Some(nulls),
        )
        .map_err(|e| format!("cannot build {}: {e}", field.full_name()))?;
        return Ok(Arc::new(list));
    }
    single_array(&field.kind(), ty, slots, numbers)
}

fn map_array(
    field: &FieldDescriptor,
    ty: &DataType,
    slots: &[Slot<'_>],
    numbers: &FieldNumbers,
) -> Result<ArrayRef, String> {
    let (DataType::Map(entries_field, _), Kind::Message(entry)) = (ty, field.kind()) else {
        return Err(format!("{} should be a map column", field.full_name()));
    };
    let DataType::Struct(entry_fields) = entries_field.data_type() else {
        return Err("map entries are not a struct".into());
    };
    let key_field = entry.map_entry_key_field();
    let value_field = entry.map_entry_value_field();
    let mut offsets = vec![0i32];
    let mut keys: Vec<Slot<'_>> = Vec::new();
    let mut values: Vec<Slot<'_>> = Vec::new();
    for slot in slots {
        if let Some(Value::Map(map)) = slot.as_deref() {
            // Protobuf maps are unordered; sort for stable files.
            let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in entries {
                keys.push(Some(Cow::Owned(sluice_proto::map_key_value(k))));
                values.push(Some(Cow::Borrowed(v)));
            }
        }
        offsets.push(keys.len() as i32);
    }
    let key_array = single_array(
        &key_field.kind(),
        entry_fields[0].data_type(),
        &keys,
        numbers,
    )?;
    let value_array = single_array(
        &value_field.kind(),
        entry_fields[1].data_type(),
        &values,
        numbers,
    )?;
    let entries = StructArray::try_new(entry_fields.clone(), vec![key_array, value_array], None)
        .map_err(|e| format!("cannot build {} entries: {e}", field.full_name()))?;
    let nulls = NullBuffer::from(slots.iter().map(|s| s.is_some()).collect::<Vec<_>>());
    let map = MapArray::try_new(
        entries_field.clone(),
        OffsetBuffer::new(offsets.into()),
        entries,
        Some(nulls),
        false,
    )
    .map_err(|e| format!("cannot build {}: {e}", field.full_name()))?;
    Ok(Arc::new(map))
}

/// One column of single (non-repeated) values of protobuf kind `kind`.
fn single_array(
    kind: &Kind,
    ty: &DataType,
    slots: &[Slot<'_>],
    numbers: &FieldNumbers,
) -> Result<ArrayRef, String> {
    if let Kind::Message(message) = kind {
        match well_known(message) {
            Some(WellKnown::Timestamp) => return Ok(Arc::new(timestamp_array(ty, slots)?)),
            Some(WellKnown::Wrapper(inner)) => {
                let unwrapped: Vec<Slot<'_>> = slots
                    .iter()
                    .map(|s| match s.as_deref() {
                        Some(Value::Message(m)) => {
                            Some(Cow::Owned(m.get_field(&inner).into_owned()))
                        }
                        _ => None,
                    })
                    .collect();
                return single_array(&inner.kind(), ty, &unwrapped, numbers);
            }
            None => {}
        }
        if let DataType::Struct(fields) = ty {
            let messages: Vec<Option<&DynamicMessage>> = slots
                .iter()
                .map(|s| match s.as_deref() {
                    Some(Value::Message(m)) => Some(m),
                    _ => None,
                })
                .collect();
            return struct_array(&messages, message, fields, numbers);
        }
        // Beyond the nesting limit: the sub-message's encoding.
        let bytes: Vec<Option<Vec<u8>>> = slots
            .iter()
            .map(|s| match s.as_deref() {
                Some(Value::Message(m)) => Some(m.encode_to_vec()),
                _ => None,
            })
            .collect();
        return Ok(Arc::new(
            bytes
                .iter()
                .map(|b| b.as_deref())
                .collect::<LargeBinaryArray>(),
        ));
    }
    let values = slots.iter().map(|s| s.as_deref());
    let array: ArrayRef = match ty {
        DataType::Boolean => Arc::new(
            values
                .map(|v| v.and_then(Value::as_bool))
                .collect::<BooleanArray>(),
        ),
        DataType::Int32 => Arc::new(
            values
                .map(|v| match v {
                    Some(Value::I32(x)) => Some(*x),
                    _ => None,
                })
                .collect::<Int32Array>(),
        ),
        DataType::Int64 => Arc::new(
            values
                .map(|v| match v {
                    Some(Value::I64(x)) => Some(*x),
                    Some(Value::U32(x)) => Some(*x as i64),
                    Some(Value::U64(x)) => Some(*x as i64),
                    Some(Value::I32(x)) => Some(*x as i64),
                    _ => None,
                })
                .collect::<Int64Array>(),
        ),
        DataType::Float32 => Arc::new(
            values
                .map(|v| v.and_then(Value::as_f32))
                .collect::<Float32Array>(),
        ),
        DataType::Float64 => Arc::new(
            values
                .map(|v| match v {
                    Some(Value::F32(x)) => Some(f64::from(*x)),
                    other => other.and_then(Value::as_f64),
                })
                .collect::<Float64Array>(),
        ),
        DataType::Utf8 => {
            let names: Vec<Option<Cow<'_, str>>> = values
                .map(|v| match (v, kind) {
                    (Some(Value::String(s)), _) => Some(Cow::Borrowed(s.as_str())),
                    (Some(Value::EnumNumber(n)), Kind::Enum(e)) => Some(match e.get_value(*n) {
                        Some(value) => Cow::Owned(value.name().to_string()),
                        None => Cow::Owned(n.to_string()),
                    }),
                    _ => None,
                })
                .collect();
            Arc::new(names.iter().map(|s| s.as_deref()).collect::<StringArray>())
        }
        DataType::LargeBinary => Arc::new(
            values
                .map(|v| match v {
                    Some(Value::Bytes(b)) => Some(b.as_ref()),
                    _ => None,
                })
                .collect::<LargeBinaryArray>(),
        ),
        other => return Err(format!("no conversion from {kind:?} to {other}")),
    };
    Ok(array)
}

fn timestamp_array(ty: &DataType, slots: &[Slot<'_>]) -> Result<TimestampMicrosecondArray, String> {
    let DataType::Timestamp(TimeUnit::Microsecond, tz) = ty else {
        return Err(format!("unexpected timestamp type {ty}"));
    };
    let mut builder = TimestampMicrosecondBuilder::with_capacity(slots.len());
    for slot in slots {
        match slot.as_deref() {
            Some(Value::Message(m)) => {
                let seconds = m
                    .get_field_by_number(1)
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                let nanos = m
                    .get_field_by_number(2)
                    .and_then(|v| v.as_i32())
                    .unwrap_or(0);
                builder.append_value(
                    seconds
                        .saturating_mul(1_000_000)
                        .saturating_add(nanos as i64 / 1000),
                );
            }
            _ => builder.append_null(),
        }
    }
    Ok(builder.finish().with_timezone_opt(tz.clone()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::layout::{FieldIds, table_schema};
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use sluice_proto::CompiledSchema;

    const ORDER: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        message Order {
          string id = 1;
          Customer customer = 2;
          repeated Item items = 3;
          map<string, int64> counts = 4;
          Status status = 5;
          google.protobuf.Timestamp placed_at = 6;
          optional int32 coupon = 7;
        }
        message Customer { string email = 1; }
        message Item { string sku = 1; int32 qty = 2; }
        enum Status { NEW = 0; PAID = 1; }
    "#;

    #[test]
    fn nested_values_become_typed_columns() {
        let schema = CompiledSchema::compile(ORDER, &BTreeMap::new()).unwrap();
        let message = schema.pool().get_message_by_name("shop.Order").unwrap();
        let mut ids = FieldIds::default();
        let at = crate::layout::Versioned {
            message: &message,
            version: 1,
        };
        let table = table_schema(Some(at), None, &mut ids).unwrap();
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&table).unwrap());

        let mut order = DynamicMessage::new(message.clone());
        order.set_field_by_name("id", Value::String("o-1".into()));
        let mut customer = DynamicMessage::new(
            message
                .parent_pool()
                .get_message_by_name("shop.Customer")
                .unwrap(),
        );
        customer.set_field_by_name("email", Value::String("a@b.c".into()));
        order.set_field_by_name("customer", Value::Message(customer));
        let item = |sku: &str, qty| {
            let mut m = DynamicMessage::new(
                message
                    .parent_pool()
                    .get_message_by_name("shop.Item")
                    .unwrap(),
            );
            m.set_field_by_name("sku", Value::String(sku.into()));
            m.set_field_by_name("qty", Value::I32(qty));
            Value::Message(m)
        };
        order.set_field_by_name("items", Value::List(vec![item("a", 1), item("b", 2)]));
        order.set_field_by_name("status", Value::EnumNumber(1));
        let bytes = order.encode_to_vec();
        let framed = sluice_proto::encode_frame(7, &[0], &bytes);

        let rows = vec![
            KafkaRow {
                partition: 0,
                offset: 5,
                timestamp_ms: 1_700_000_000_000,
                key: Some(b"k"),
                value: Some(&framed),
                headers: vec![(b"h".as_slice(), Some(b"v".as_slice()))],
            },
            KafkaRow {
                partition: 0,
                offset: 6,
                timestamp_ms: 1_700_000_000_001,
                key: None,
                value: Some(b"not protobuf \xff\xff"),
                headers: vec![],
            },
        ];
        let format = MessageFormat {
            message: message.clone(),
            schema_version: 1,
            framing: Framing::Confluent(Arc::new(vec![FramedAs {
                schema_id: 7,
                message_indexes: vec![0],
                message: message.clone(),
            }])),
            history: Arc::new(vec![(1, message)]),
        };
        let formats = Formats {
            value: Some(&format),
            key: None,
        };
        let (batch, skipped) = to_record_batch(&arrow, formats, &ids.numbers(), &rows).unwrap();
        let undecoded = skipped.values;
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(undecoded.count, 1);
        assert_eq!(undecoded.first.as_ref().map(|f| (f.0, f.1)), Some((0, 6)));
        let value = batch.column_by_name("value").unwrap().as_struct();
        assert!(value.is_valid(0));
        assert!(value.is_null(1), "an undecodable value is null");
        let status = value.column_by_name("status").unwrap().as_string::<i32>();
        assert_eq!(status.value(0), "PAID");
        let items = value.column_by_name("items").unwrap().as_list::<i32>();
        assert_eq!(items.value(0).len(), 2);
        let coupon = value.column_by_name("coupon").unwrap();
        assert!(coupon.is_null(0), "an unset optional field is null");
        let raw = batch
            .column_by_name("kafka_value")
            .unwrap()
            .as_binary::<i64>();
        assert_eq!(raw.value(0), framed.as_slice());
    }

    /// Rows of three schema versions in one batch: each is read with its
    /// own version, a retired field keeps its values, a widened one is
    /// cast, and a field whose type changed incompatibly fills the old
    /// column from old rows and the new column from new ones.
    #[test]
    fn rows_of_every_version_fill_the_columns_their_fields_fit() {
        let v1 = "syntax = \"proto3\"; package shop;
            message Order { string id = 1; int32 qty = 2; int64 code = 3; }";
        let v2 = "syntax = \"proto3\"; package shop;
            message Order { string id = 1; int64 qty = 2; int64 code = 3; string note = 4; }";
        let v3 = "syntax = \"proto3\"; package shop;
            message Order { string id = 1; int64 qty = 2; string code = 3; reserved 4; }";
        let compiled: Vec<MessageDescriptor> = [v1, v2, v3]
            .iter()
            .map(|t| {
                let s = CompiledSchema::compile(t, &BTreeMap::new()).unwrap();
                s.pool().get_message_by_name("shop.Order").unwrap()
            })
            .collect();
        let mut ids = FieldIds::default();
        let mut schema = None;
        for (i, message) in compiled.iter().enumerate() {
            let at = crate::layout::Versioned {
                message,
                version: i as i32 + 1,
            };
            let (next, _) =
                crate::layout::evolve_schema(Some(at), None, &mut ids, schema.as_ref()).unwrap();
            schema = Some(next);
        }
        let table = schema.unwrap();
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&table).unwrap());
        let encode = |m: &MessageDescriptor, fields: &[(&str, Value)], id: u32| {
            let mut msg = DynamicMessage::new(m.clone());
            for (name, value) in fields {
                msg.set_field_by_name(name, value.clone());
            }
            sluice_proto::encode_frame(id, &[0], &msg.encode_to_vec())
        };
        let values = [
            encode(
                &compiled[0],
                &[
                    ("id", Value::String("a".into())),
                    ("qty", Value::I32(1)),
                    ("code", Value::I64(11)),
                ],
                1,
            ),
            encode(
                &compiled[1],
                &[
                    ("id", Value::String("b".into())),
                    ("qty", Value::I64(2)),
                    ("note", Value::String("n".into())),
                ],
                2,
            ),
            encode(
                &compiled[2],
                &[
                    ("id", Value::String("c".into())),
                    ("qty", Value::I64(3)),
                    ("code", Value::String("x".into())),
                ],
                3,
            ),
        ];
        let rows: Vec<KafkaRow<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| KafkaRow {
                partition: 0,
                offset: i as i64,
                timestamp_ms: 0,
                key: None,
                value: Some(v),
                headers: vec![],
            })
            .collect();
        let framings = compiled
            .iter()
            .enumerate()
            .map(|(i, m)| FramedAs {
                schema_id: i as u32 + 1,
                message_indexes: vec![0],
                message: m.clone(),
            })
            .collect();
        let format = MessageFormat {
            message: compiled[2].clone(),
            schema_version: 3,
            framing: Framing::Confluent(Arc::new(framings)),
            history: Arc::new(
                compiled
                    .iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, m)| (i as i32 + 1, m))
                    .collect(),
            ),
        };
        let formats = Formats {
            value: Some(&format),
            key: None,
        };
        let (batch, skipped) = to_record_batch(&arrow, formats, &ids.numbers(), &rows).unwrap();
        assert_eq!(skipped.values.count, 0);
        let value = batch.column_by_name("value").unwrap().as_struct();
        let qty = value
            .column_by_name("qty")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(qty.values().to_vec(), vec![1, 2, 3]);
        let note = value.column_by_name("note").unwrap().as_string::<i32>();
        assert_eq!(
            (0..3)
                .map(|i| note.is_valid(i).then(|| note.value(i)))
                .collect::<Vec<_>>(),
            vec![None, Some("n"), None],
            "a retired field keeps the values of the versions that had it"
        );
        let old = value
            .column_by_name("code")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(
            (0..3)
                .map(|i| old.is_valid(i).then(|| old.value(i)))
                .collect::<Vec<_>>(),
            // v2 still declares `code` as int64 (unset: proto3's 0).
            vec![Some(11), Some(0), None],
            "the old column holds the old-typed values"
        );
        let new = value.column_by_name("code_v3").unwrap().as_string::<i32>();
        assert_eq!(
            (0..3)
                .map(|i| new.is_valid(i).then(|| new.value(i)))
                .collect::<Vec<_>>(),
            vec![None, None, Some("x")],
            "the new column holds the new-typed values"
        );
    }

    /// A topic with a key schema: keys decode into the `key` column, beside
    /// the value; a key that does not decode is null there and counted,
    /// its bytes still in `kafka_key`.
    #[test]
    fn keys_decode_into_their_own_column() {
        let text = "syntax = \"proto3\"; package shop;
            message Order { string id = 1; }
            message OrderKey { string tenant = 1; int64 number = 2; }";
        let schema = CompiledSchema::compile(text, &BTreeMap::new()).unwrap();
        let value = schema.pool().get_message_by_name("shop.Order").unwrap();
        let key = schema.pool().get_message_by_name("shop.OrderKey").unwrap();
        let at = |message| {
            Some(crate::layout::Versioned {
                message,
                version: 1,
            })
        };
        let mut ids = FieldIds::default();
        let table = table_schema(at(&value), at(&key), &mut ids).unwrap();
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&table).unwrap());
        let mut k = DynamicMessage::new(key.clone());
        k.set_field_by_name("tenant", Value::String("acme".into()));
        k.set_field_by_name("number", Value::I64(42));
        let key_bytes = sluice_proto::encode_frame(3, &[1], &k.encode_to_vec());
        let mut v = DynamicMessage::new(value.clone());
        v.set_field_by_name("id", Value::String("o-1".into()));
        let value_bytes = sluice_proto::encode_frame(3, &[0], &v.encode_to_vec());
        let row = |offset, key: Option<&'static [u8]>| KafkaRow {
            partition: 0,
            offset,
            timestamp_ms: 0,
            key,
            value: None,
            headers: vec![],
        };
        let key_bytes: &'static [u8] = key_bytes.leak();
        let value_bytes: &'static [u8] = value_bytes.leak();
        let mut rows = vec![row(0, Some(key_bytes)), row(1, Some(b"\xff"))];
        rows[0].value = Some(value_bytes);
        let format = |message: &MessageDescriptor, indexes: Vec<i32>| MessageFormat {
            message: message.clone(),
            schema_version: 1,
            framing: Framing::Confluent(Arc::new(vec![FramedAs {
                schema_id: 3,
                message_indexes: indexes,
                message: message.clone(),
            }])),
            history: Arc::new(vec![(1, message.clone())]),
        };
        let (value_format, key_format) = (format(&value, vec![0]), format(&key, vec![1]));
        let formats = Formats {
            value: Some(&value_format),
            key: Some(&key_format),
        };
        let (batch, skipped) = to_record_batch(&arrow, formats, &ids.numbers(), &rows).unwrap();
        assert_eq!(skipped.values.count, 0, "a null value is not undecoded");
        assert_eq!(skipped.keys.count, 1);
        assert_eq!(skipped.keys.first.as_ref().map(|f| f.1), Some(1));
        let keys = batch.column_by_name("key").unwrap().as_struct();
        let tenant = keys.column_by_name("tenant").unwrap().as_string::<i32>();
        assert_eq!(tenant.value(0), "acme");
        let number = keys
            .column_by_name("number")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(number.value(0), 42);
        assert!(keys.is_null(1));
        let values = batch.column_by_name("value").unwrap().as_struct();
        let id = values.column_by_name("id").unwrap().as_string::<i32>();
        assert_eq!(id.value(0), "o-1");
        let raw = batch
            .column_by_name("kafka_key")
            .unwrap()
            .as_binary::<i64>();
        assert_eq!(raw.value(1), b"\xff");
    }
}
