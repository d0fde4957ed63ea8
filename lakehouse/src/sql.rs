//! SQL over topic tables (DataFusion through the Iceberg catalog), read only.
//!
//! Tables are named `NAMESPACE.TABLE` (`kafka.orders`), or just `orders`:
//! the topic namespace is the default schema. Statements that would change
//! anything (DDL, DML such as INSERT, COPY, SET) are refused: a topic's
//! table is written by the broker alone.

use std::sync::Arc;

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use iceberg::Catalog;
use iceberg_datafusion::IcebergCatalogProvider;

use crate::catalog::{CATALOG_NAME, LakeCatalog};

/// A query's answer: column names and rows of displayed values.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// More rows matched than `max_rows`; the rest were left out.
    pub truncated: bool,
}

/// Runs one read-only SQL statement and returns at most `max_rows` rows.
pub async fn query(
    catalog: Arc<LakeCatalog>,
    namespace: &str,
    sql: &str,
    max_rows: usize,
) -> Result<QueryResult, String> {
    let provider = IcebergCatalogProvider::try_new(catalog as Arc<dyn Catalog>)
        .await
        .map_err(|e| format!("cannot read the catalog: {e}"))?;
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, namespace)
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_catalog(CATALOG_NAME, Arc::new(provider));
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
