//! What a topic's table is, for operators: its columns with their types,
//! field ids and the schema versions that brought each in (and retired
//! it), and the totals of its current snapshot.

use iceberg::spec::{NestedFieldRef, Type};
use iceberg::table::Table;

use crate::layout::{self, FieldIds, Lifetime};
use crate::table::{
    KEY_MESSAGE_PROPERTY, KEY_VERSION_PROPERTY, VALUE_MESSAGE_PROPERTY, VALUE_VERSION_PROPERTY,
};

/// A table as `sluice table describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableDescription {
    /// `namespace.table`.
    pub table: String,
    pub location: String,
    pub metadata_location: Option<String>,
    /// The partition spec, e.g. `day(kafka_timestamp)`.
    pub partitioning: String,
    pub snapshots: usize,
    pub current_snapshot_id: Option<i64>,
    /// From the current snapshot's summary.
    pub records: Option<u64>,
    pub data_files: Option<u64>,
    pub value_message: Option<String>,
    pub value_schema_version: Option<i32>,
    pub key_message: Option<String>,
    pub key_schema_version: Option<i32>,
    /// Every column, nested ones under their parents (depth first).
    pub columns: Vec<ColumnDescription>,
}

/// One column (or nested field) of the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnDescription {
    /// Dotted path, as Iceberg names it (`value.items.element.sku`).
    pub name: String,
    pub id: i32,
    /// `string`, `long`, `timestamptz`, `struct`, `list<string>`, …
    #[serde(rename = "type")]
    pub type_name: String,
    pub required: bool,
    /// The subject version (of the value's subject for `value.*`, of the
    /// key's for `key.*`) whose message first had the field; none for
    /// Kafka's own columns and for columns made before versions were
    /// recorded.
    pub since: Option<i32>,
    /// The first version without the field: the column stays for the rows
    /// written before, null for later ones.
    pub retired: Option<i32>,
}

/// Describes `table`.
pub fn describe(table: &Table) -> Result<TableDescription, String> {
    let metadata = table.metadata();
    let props = metadata.properties();
    let ids = FieldIds::from_properties(props, metadata.last_column_id())?;
    let mut columns = Vec::new();
    for field in metadata.current_schema().as_struct().fields() {
        walk(field, "", None, &ids, &mut columns);
    }
    let summary = metadata
        .current_snapshot()
        .map(|s| s.summary().additional_properties.clone())
        .unwrap_or_default();
    let total = |key: &str| summary.get(key).and_then(|v| v.parse::<u64>().ok());
    let version = |key: &str| props.get(key).and_then(|v| v.parse::<i32>().ok());
    let spec = metadata.default_partition_spec();
    let schema = metadata.current_schema();
    let partitioning = if spec.fields().is_empty() {
        "none".to_string()
    } else {
        spec.fields()
            .iter()
            .map(|f| {
                let source = schema
                    .name_by_field_id(f.source_id)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("field {}", f.source_id));
                format!("{}({source})", f.transform)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(TableDescription {
        table: table.identifier().to_string(),
        location: metadata.location().to_string(),
        metadata_location: table.metadata_location().map(str::to_string),
        partitioning,
        snapshots: metadata.snapshots().len(),
        current_snapshot_id: metadata.current_snapshot().map(|s| s.snapshot_id()),
        records: total("total-records"),
        data_files: total("total-data-files"),
        value_message: props.get(VALUE_MESSAGE_PROPERTY).cloned(),
        value_schema_version: version(VALUE_VERSION_PROPERTY),
        key_message: props.get(KEY_MESSAGE_PROPERTY).cloned(),
        key_schema_version: version(KEY_VERSION_PROPERTY),
        columns,
    })
}

/// Adds `field` and what is nested in it. A field under a retired one is
/// retired with it.
fn walk(
    field: &NestedFieldRef,
    parent: &str,
    inherited: Option<Lifetime>,
    ids: &FieldIds,
    out: &mut Vec<ColumnDescription>,
) {
    let name = if parent.is_empty() {
        field.name.clone()
    } else {
        format!("{parent}.{}", field.name)
    };
    let own = ids.lifetime(field.id);
    let life = Lifetime {
        since: own.and_then(|l| l.since),
        retired: own
            .and_then(|l| l.retired)
            .or(inherited.and_then(|l| l.retired)),
    };
    out.push(ColumnDescription {
        name: name.clone(),
        id: field.id,
        type_name: type_name(&field.field_type),
        required: field.required,
        since: life.since,
        retired: life.retired,
    });
    // Kafka's own nested fields (the headers) carry no versions.
    if !matches!(
        field.name.as_str(),
        layout::COL_VALUE | layout::COL_KEY_FIELDS
    ) && parent.is_empty()
    {
        return;
    }
    for child in children(&field.field_type) {
        walk(child, &name, Some(life), ids, out);
    }
}

/// The fields nested directly in a type: a struct's fields, a list's
/// element, a map's key and value.
fn children(ty: &Type) -> Vec<&NestedFieldRef> {
    match ty {
        Type::Struct(s) => s.fields().iter().collect(),
        Type::List(l) if !matches!(*l.element_field.field_type, Type::Primitive(_)) => {
            vec![&l.element_field]
        }
        Type::Map(m) if !matches!(*m.value_field.field_type, Type::Primitive(_)) => {
            vec![&m.key_field, &m.value_field]
        }
        _ => vec![],
    }
}

/// A short type name: primitives as Iceberg spells them, nested types by
/// their kind with primitive elements spelled out.
fn type_name(ty: &Type) -> String {
    match ty {
        Type::Primitive(p) => p.to_string(),
        Type::Struct(_) => "struct".to_string(),
        Type::List(l) => format!("list<{}>", type_name(&l.element_field.field_type)),
        Type::Map(m) => format!(
            "map<{}, {}>",
            type_name(&m.key_field.field_type),
            type_name(&m.value_field.field_type)
        ),
    }
}
