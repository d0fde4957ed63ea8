//! SQL over topic tables (DataFusion through the Iceberg catalog), read only.
//!
//! Tables are named `NAMESPACE.TABLE` (`kafka.orders`), or just `orders`:
//! the topic namespace is the default schema. Statements that would change
//! anything (DDL, DML such as INSERT, COPY, SET) are refused: a topic's
//! table is written by the broker alone.
//!
//! A reader restricted by field policies queries views instead of the
//! tables: each [`TableGuard`] names the `value` (and `key`) fields the
//! reader may not see, and the view leaves them out, masks them or hashes
//! them exactly as Kafka fetches do (so a hashed email joins across both).
//! The raw `kafka_value` (`kafka_key`) column, which holds every field, is
//! left out of such a view. Only the guarded views are reachable from the query: the tables
//! behind them are not registered under any name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, TableProvider,
};
use datafusion::common::{Column, ScalarValue};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::{Expr, lit, when};
use iceberg::{Catalog, NamespaceIdent};
use sluice_proto::{Hidden, MASK};

use crate::catalog::{CATALOG_NAME, LakeCatalog};
use crate::scan::TopicTableProvider;

/// A query's answer: column names and rows of displayed values.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// More rows matched than `max_rows`; the rest were left out.
    pub truncated: bool,
}

/// What one reader may not see of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableGuard {
    /// Paths of field names under the `value` column, and what the reader
    /// gets instead.
    pub hidden: Vec<(Vec<String>, Hidden)>,
    /// The same for the fields of the `key` column (topics with a key
    /// schema). When any is hidden, `kafka_key` is left out too.
    pub key_hidden: Vec<(Vec<String>, Hidden)>,
    /// The reader may not read the table at all: it is not there for them.
    pub denied: bool,
}

/// Guards by table name (in the topic namespace).
pub type Guards = HashMap<String, TableGuard>;

/// Runs one read-only SQL statement and returns at most `max_rows` rows.
/// Tables named in `guards` are replaced by views that apply them.
pub async fn query(
    catalog: Arc<LakeCatalog>,
    namespace: &str,
    sql: &str,
    max_rows: usize,
    guards: &Guards,
) -> Result<QueryResult, String> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, namespace)
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_catalog(
        CATALOG_NAME,
        guarded_catalog(&catalog, namespace, guards).await?,
    );
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| e.to_string())?;
    let schema = frame.schema().as_arrow().clone();
    let batches = frame
        .limit(0, Some(max_rows + 1))
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut result = QueryResult {
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        ..Default::default()
    };
    let format = FormatOptions::default().with_null("NULL");
    for batch in &batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &format))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            if result.rows.len() == max_rows {
                result.truncated = true;
                return Ok(result);
            }
            result.rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(result)
}

/// The topic namespace: every table read through [`TopicTableProvider`]
/// (every schema version of its files readable), and every guarded table
/// replaced by its view.
async fn guarded_catalog(
    catalog: &LakeCatalog,
    namespace: &str,
    guards: &Guards,
) -> Result<Arc<dyn CatalogProvider>, String> {
    let tables = MemorySchemaProvider::new();
    let ns = NamespaceIdent::new(namespace.to_string());
    let idents = match catalog.list_tables(&ns).await {
        Ok(idents) => idents,
        Err(e) if e.kind() == iceberg::ErrorKind::NamespaceNotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read the catalog: {e}")),
    };
    // Views are planned in a context of their own, so the raw tables never
    // get a name the reader's query could use.
    let planner = SessionContext::new();
    for ident in idents {
        let name = ident.name().to_string();
        let table = catalog
            .load_table(&ident)
            .await
            .map_err(|e| format!("cannot load table {name}: {e}"))?;
        let table: Arc<dyn TableProvider> =
            Arc::new(TopicTableProvider::new(table).map_err(|e| format!("table {name}: {e}"))?);
        let table = match guards.get(&name) {
            None => table,
            Some(guard) if guard.denied => continue,
            Some(guard) => {
                let frame = planner.read_table(table).map_err(|e| e.to_string())?;
                let columns = guarded_columns(frame.schema(), guard);
                frame
                    .select(columns)
                    .map_err(|e| format!("cannot apply the field policy to {name}: {e}"))?
                    .into_view()
            }
        };
        datafusion::catalog::SchemaProvider::register_table(&tables, name, table)
            .map_err(|e| e.to_string())?;
    }
    let catalog = MemoryCatalogProvider::new();
    catalog
        .register_schema(namespace, Arc::new(tables))
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(catalog))
}

/// A tree of hidden paths: what happens at this field, or below it.
#[derive(Default)]
struct Node {
    action: Option<Hidden>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn of(hidden: &[(Vec<String>, Hidden)]) -> Node {
        let mut root = Node::default();
        for (path, how) in hidden {
            let mut node = &mut root;
            for name in path {
                node = node.children.entry(name.clone()).or_default();
            }
            node.action = Some(*how);
        }
        root
    }
}

fn guarded_columns(schema: &datafusion::common::DFSchema, guard: &TableGuard) -> Vec<Expr> {
    let value = Node::of(&guard.hidden);
    let key = Node::of(&guard.key_hidden);
    let mut out = Vec::new();
    for (qualifier, field) in schema.iter() {
        let name = field.name().as_str();
        let column = Expr::Column(Column::new(qualifier.cloned(), name));
        let projected = match name {
            crate::layout::COL_VALUE => project(column, field.data_type(), &value),
            crate::layout::COL_KEY_FIELDS => project(column, field.data_type(), &key),
            // The value (key) exactly as produced holds every field.
            crate::layout::COL_VALUE_BYTES if !guard.hidden.is_empty() => None,
            crate::layout::COL_KEY if !guard.key_hidden.is_empty() => None,
            _ => Some(column),
        };
        match projected {
            // Columns kept as they are keep their qualified name.
            Some(e @ Expr::Column(_)) => out.push(e),
            Some(e) => out.push(e.alias(name)),
            None => {}
        }
    }
    out
}

/// The expression a reader sees for `expr` (of `data_type`), or `None`
/// when it is left out.
fn project(expr: Expr, data_type: &DataType, node: &Node) -> Option<Expr> {
    use datafusion::functions::core::expr_fn::{get_field, named_struct};
    use datafusion::functions::crypto::expr_fn::sha256;
    use datafusion::functions::encoding::expr_fn::encode;
    let is_text = matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let is_binary = matches!(
        data_type,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    );
    match node.action {
        Some(Hidden::Mask) if is_text => {
            return when(expr.clone().is_null(), lit(ScalarValue::Utf8(None)))
                .otherwise(lit(MASK))
                .ok();
        }
        Some(Hidden::Mask) if is_binary => {
            return when(expr.clone().is_null(), lit(ScalarValue::Binary(None)))
                .otherwise(lit(ScalarValue::Binary(Some(Vec::new()))))
                .ok();
        }
        Some(Hidden::Hash) if is_text => return Some(encode(sha256(expr), lit("hex"))),
        Some(Hidden::Hash) if is_binary => return Some(sha256(expr)),
        Some(_) => return None,
        None if node.children.is_empty() => return Some(expr),
        None => {}
    }
    // Something below this field is hidden. Structs are rebuilt without
    // it; a list or map cannot be rewritten element by element here, so it
    // is left out whole.
    let DataType::Struct(fields) = data_type else {
        return None;
    };
    let mut args = Vec::new();
    for f in fields {
        let inner = get_field(expr.clone(), f.name().as_str());
        let kept = match node.children.get(f.name()) {
            None => Some(inner),
            Some(child) => project(inner, f.data_type(), child),
        };
        if let Some(e) = kept {
            args.push(lit(f.name().as_str()));
            args.push(e);
        }
    }
    (!args.is_empty()).then(|| named_struct(args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{Field, Fields, Schema};
    use datafusion::common::DFSchema;

    fn names(exprs: &[Expr]) -> Vec<String> {
        exprs.iter().map(|e| e.schema_name().to_string()).collect()
    }

    /// A key field hidden from the reader is left out of the `key` column,
    /// and `kafka_key` (which holds it) goes; the value is untouched.
    #[test]
    fn hidden_key_fields_leave_the_key_columns() {
        let text = || Field::new("tenant", DataType::Utf8, true);
        let number = || Field::new("number", DataType::Int64, true);
        let schema = Schema::new(vec![
            Field::new("kafka_key", DataType::LargeBinary, true),
            Field::new("kafka_value", DataType::LargeBinary, true),
            Field::new(
                "key",
                DataType::Struct(Fields::from(vec![text(), number()])),
                true,
            ),
            Field::new(
                "value",
                DataType::Struct(Fields::from(vec![number()])),
                true,
            ),
        ]);
        let schema = DFSchema::try_from(schema).unwrap();
        let open = guarded_columns(&schema, &TableGuard::default());
        assert_eq!(names(&open), ["kafka_key", "kafka_value", "key", "value"]);
        let guard = TableGuard {
            key_hidden: vec![(vec!["tenant".into()], Hidden::Drop)],
            ..Default::default()
        };
        let columns = guarded_columns(&schema, &guard);
        let shown = names(&columns);
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert_eq!(shown[0], "kafka_value");
        assert_eq!(shown[2], "value");
        // The key is rebuilt with `number` alone.
        let key = columns[1].to_string();
        assert!(key.contains("number") && !key.contains("tenant"), "{key}");
    }
}
