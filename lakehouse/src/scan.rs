//! Reading a topic's table for SQL, whatever schema version wrote each file.
//!
//! Iceberg plans the scan (which data files hold rows, pruned by filters on
//! the scalar columns); each Parquet file is then read here and its columns
//! are matched to the table's current schema by Iceberg field id, at every
//! depth:
//!
//! ```text
//!   plan_files ──► data file ──► Parquet columns (file's schema)
//!                                   │ match by field id, recursively
//!                                   ▼
//!                            current table schema
//!   field the file lacks ............ NULLs of the current type
//!   field renamed since ............. the file's values, current name
//!   number widened since ............ the file's values, cast
//! ```
//!
//! The general Iceberg reader casts nested structs by position, which fails
//! as soon as a message gains a field (older files have fewer children).
//! Reading here keeps every version readable in one query.
//!
//! Filters are pushed to planning as "inexact": they prune files, and the
//! engine still applies them to every row. Filters on struct, list or map
//! columns are not pushed at all: the Iceberg planner cannot bind them.

use std::any::Any;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, LargeListArray, ListArray, MapArray, RecordBatch, RecordBatchOptions,
    StructArray, new_null_array,
};
use arrow_schema::{DataType, Field, FieldRef, Fields, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowFileReader;
use iceberg::expr::Predicate;
use iceberg::io::FileMetadata;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::{PARQUET_FIELD_ID_META_KEY, ProjectionMask};
use parquet::file::metadata::RowGroupMetaData;

/// How many data files one query reads at once.
const FILES_IN_FLIGHT: usize = 4;

/// A topic's table as DataFusion sees it: the current schema, every file.
#[derive(Debug)]
pub struct TopicTableProvider {
    table: Table,
    schema: SchemaRef,
}

impl TopicTableProvider {
    pub fn new(table: Table) -> iceberg::Result<TopicTableProvider> {
        let schema = iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())?;
        Ok(TopicTableProvider {
            table,
            schema: Arc::new(schema),
        })
    }

    /// Whether the Iceberg planner can use this filter: it names only
    /// columns of scalar type.
    fn scalar_only(&self, filter: &Expr) -> bool {
        filter.column_refs().iter().all(|c| {
            self.schema
                .field_with_name(&c.name)
                .is_ok_and(|f| !f.data_type().is_nested())
        })
    }
}

#[async_trait::async_trait]
impl TableProvider for TopicTableProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let output = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let scalar: Vec<Expr> = filters
            .iter()
            .filter(|f| self.scalar_only(f))
            .cloned()
            .collect();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(TopicScan {
            table: self.table.clone(),
            output,
            predicate: iceberg_datafusion::physical_plan::convert_filters_to_predicate(&scalar),
            limit,
            properties,
        }))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.scalar_only(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }
}

/// The scan of one table: plans its files when executed, then reads them.
#[derive(Debug)]
struct TopicScan {
    table: Table,
    output: SchemaRef,
    predicate: Option<Predicate>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for TopicScan {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let columns: Vec<&str> = self
            .output
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "TopicScan table:[{}] columns:[{}]",
            self.table.identifier(),
            columns.join(",")
        )?;
        if let Some(p) = &self.predicate {
            write!(f, " predicate:[{p}]")?;
        }
        if let Some(limit) = self.limit {
            write!(f, " limit:[{limit}]")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TopicScan {
    fn name(&self) -> &str {
        "TopicScan"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let table = self.table.clone();
        let output = self.output.clone();
        let predicate = self.predicate.clone();
        let tasks = futures::stream::once(async move {
            let mut scan = table.scan().select_all();
            if let Some(p) = predicate {
                scan = scan.with_filter(p);
            }
            let tasks = scan.build().map_err(external)?.plan_files().await;
            Ok::<_, DataFusionError>((table, tasks.map_err(external)?))
        });
        let batches = tasks
            .map_ok(move |(table, tasks)| {
                let output = output.clone();
                tasks
                    .map_err(external)
                    .map_ok(move |task| read_file(table.clone(), task, output.clone()))
                    .try_buffered(FILES_IN_FLIGHT)
                    .try_flatten()
            })
            .try_flatten();
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        let limited = batches.try_filter_map(move |batch| {
            let keep = batch.num_rows().min(remaining);
            remaining -= keep;
            futures::future::ready(Ok((keep > 0).then(|| batch.slice(0, keep))))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.output.clone(),
            limited,
        )))
    }
}

fn external(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The rows of one planned file, in the output schema.
async fn read_file(
    table: Table,
    task: FileScanTask,
    output: SchemaRef,
) -> DFResult<futures::stream::BoxStream<'static, DFResult<RecordBatch>>> {
    if !task.deletes.is_empty() {
        return Err(DataFusionError::NotImplemented(format!(
            "{} has delete files, which this reader does not apply yet",
            task.data_file_path
        )));
    }
    let input = table
        .file_io()
        .new_input(&task.data_file_path)
        .map_err(external)?;
    let reader = ArrowFileReader::new(
        FileMetadata {
            size: task.file_size_in_bytes,
        },
        input.reader().await.map_err(external)?,
    );
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let file_schema = builder.schema().clone();
    // The file's top-level columns that the output needs, by field id. At
    // least one is read, so a projection of no columns still counts rows.
    let mut roots: Vec<usize> = output
        .fields()
        .iter()
        .filter_map(|f| find_child(file_schema.fields(), f))
        .collect();
    if roots.is_empty() && !file_schema.fields().is_empty() {
        roots.push(0);
    }
    roots.sort_unstable();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let row_groups = row_groups_in(
        builder.metadata().row_groups(),
        task.start..task.start + task.length,
    );
    let stream = builder
        .with_projection(mask)
        .with_row_groups(row_groups)
        .build()?;
    Ok(stream.map(move |batch| conform(&batch?, &output)).boxed())
}

/// Row groups that start inside the byte range a task covers (a planner
/// may split a large file into several tasks).
fn row_groups_in(groups: &[RowGroupMetaData], range: Range<u64>) -> Vec<usize> {
    groups
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            let start = g
                .columns()
                .iter()
                .map(|c| {
                    c.dictionary_page_offset()
                        .unwrap_or(c.data_page_offset())
                        .max(0) as u64
                })
                .min()
                .unwrap_or(0);
            range.contains(&start)
        })
        .map(|(i, _)| i)
        .collect()
}

fn field_id(field: &Field) -> Option<&str> {
    field
        .metadata()
        .get(PARQUET_FIELD_ID_META_KEY)
        .map(String::as_str)
}

/// The position among `fields` of the field that `target` is: the same
/// field id, or (for files written without ids) the same name.
fn find_child(fields: &Fields, target: &Field) -> Option<usize> {
    match field_id(target) {
        Some(id) if fields.iter().any(|f| field_id(f).is_some()) => {
            fields.iter().position(|f| field_id(f) == Some(id))
        }
        _ => fields.iter().position(|f| f.name() == target.name()),
    }
}

/// A batch read from a file, reshaped to the output schema.
fn conform(batch: &RecordBatch, output: &SchemaRef) -> DFResult<RecordBatch> {
    let file_fields = batch.schema_ref().fields().clone();
    let columns = output
        .fields()
        .iter()
        .map(|target| match find_child(&file_fields, target) {
            Some(i) => adapt(batch.column(i), target),
            None => Ok(new_null_array(target.data_type(), batch.num_rows())),
        })
        .collect::<DFResult<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        output.clone(),
        columns,
        &options,
    )?)
}

/// One column of a file as the current schema's `target` field: nested
/// children matched by field id, missing ones NULL, widened numbers cast.
fn adapt(array: &ArrayRef, target: &Field) -> DFResult<ArrayRef> {
    if array.data_type() == target.data_type() {
        return Ok(array.clone());
    }
    let adapted: ArrayRef = match (target.data_type(), array.data_type()) {
        (DataType::Struct(fields), DataType::Struct(_)) => {
            Arc::new(adapt_struct(array.as_struct(), fields)?)
        }
        (DataType::List(element), DataType::List(_)) => {
            let list = array.as_list::<i32>();
            Arc::new(ListArray::try_new(
                element.clone(),
                list.offsets().clone(),
                adapt(list.values(), element)?,
                list.nulls().cloned(),
            )?)
        }
        (DataType::LargeList(element), DataType::LargeList(_)) => {
            let list = array.as_list::<i64>();
            Arc::new(LargeListArray::try_new(
                element.clone(),
                list.offsets().clone(),
                adapt(list.values(), element)?,
                list.nulls().cloned(),
            )?)
        }
        (DataType::Map(entries, sorted), DataType::Map(..)) => {
            let map = array.as_map();
            let DataType::Struct(entry_fields) = entries.data_type() else {
                return Err(DataFusionError::Internal(format!(
                    "map entries of {} are not a struct",
                    target.name()
                )));
            };
            Arc::new(MapArray::try_new(
                entries.clone(),
                map.offsets().clone(),
                adapt_struct(map.entries(), entry_fields)?,
                map.nulls().cloned(),
                *sorted,
            )?)
        }
        (to, _) => arrow_cast::cast(array, to)?,
    };
    Ok(adapted)
}

fn adapt_struct(array: &StructArray, fields: &Fields) -> DFResult<StructArray> {
    let have = array.fields();
    let children = fields
        .iter()
        .map(|target: &FieldRef| match find_child(have, target) {
            Some(i) => adapt(array.column(i), target),
            None => Ok(new_null_array(target.data_type(), array.len())),
        })
        .collect::<DFResult<Vec<_>>>()?;
    Ok(StructArray::try_new(
        fields.clone(),
        children,
        array.nulls().cloned(),
    )?)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::{Int32Array, Int64Array, StringArray};

    use super::*;

    fn with_id(field: Field, id: i32) -> Field {
        field.with_metadata(HashMap::from([(
            PARQUET_FIELD_ID_META_KEY.to_string(),
            id.to_string(),
        )]))
    }

    #[test]
    fn a_struct_from_an_older_file_gains_nulls_renames_and_widens() {
        // File: struct { id(1): string "order_id", amount(2): int32 }
        let file_fields = Fields::from(vec![
            with_id(Field::new("order_id", DataType::Utf8, true), 1),
            with_id(Field::new("amount", DataType::Int32, true), 2),
        ]);
        let file = StructArray::try_new(
            file_fields,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int32Array::from(vec![Some(5), None])),
            ],
            None,
        )
        .unwrap();
        // Table now: coupon(3) added first, amount widened, order_id renamed.
        let target = Field::new_struct(
            "value",
            vec![
                with_id(Field::new("coupon", DataType::Utf8, true), 3),
                with_id(Field::new("total", DataType::Int64, true), 2),
                with_id(Field::new("id", DataType::Utf8, true), 1),
            ],
            true,
        );
        let array: ArrayRef = Arc::new(file);
        let out = adapt(&array, &target).unwrap();
        let out = out.as_struct();
        assert_eq!(out.column(0).null_count(), 2);
        assert_eq!(
            out.column(1).as_any().downcast_ref::<Int64Array>().unwrap(),
            &Int64Array::from(vec![Some(5), None])
        );
        assert_eq!(
            out.column(2)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap(),
            &StringArray::from(vec!["a", "b"])
        );
        assert_eq!(out.data_type(), target.data_type());
    }

    #[test]
    fn list_elements_are_adapted_through_the_list() {
        let element_in_file = Arc::new(Field::new_struct(
            "element",
            vec![with_id(Field::new("sku", DataType::Utf8, true), 5)],
            true,
        ));
        let values = StructArray::try_new(
            match element_in_file.data_type() {
                DataType::Struct(f) => f.clone(),
                _ => unreachable!(),
            },
            vec![Arc::new(StringArray::from(vec!["x", "y", "z"]))],
            None,
        )
        .unwrap();
        let list: ArrayRef = Arc::new(
            ListArray::try_new(
                element_in_file,
                arrow_buffer::OffsetBuffer::new(vec![0, 2, 3].into()),
                Arc::new(values),
                None,
            )
            .unwrap(),
        );
        let target_element = Arc::new(Field::new_struct(
            "element",
            vec![
                with_id(Field::new("sku", DataType::Utf8, true), 5),
                with_id(Field::new("qty", DataType::Int64, true), 6),
            ],
            true,
        ));
        let target = Field::new("lines", DataType::List(target_element), true);
        let out = adapt(&list, &target).unwrap();
        assert_eq!(out.data_type(), target.data_type());
        let items = out.as_list::<i32>().values().as_struct().clone();
        assert_eq!(items.column(1).null_count(), 3);
        assert_eq!(items.len(), 3);
    }
}
