//! Topics as Iceberg tables: Kafka records to Arrow to Parquet, commits to
//! one Iceberg table per topic, and the Iceberg REST catalog over them.
//!
//! - [`layout`]: the columns of a topic's table and their field ids.
//! - [`rows`]: records → Arrow batches in that layout.
//! - [`catalog`]: the Iceberg SQL catalog in the metadata database, with the
//!   archiver's offset index committed in the same transaction.
//! - [`table`]: creating, evolving and appending to a topic's table.
//! - [`rest`]: the Iceberg REST catalog API over the same catalog.
//! - [`describe`]: a table's columns with the schema versions that brought
//!   them in, for operators.
//! - [`archived`]: records read back from the Parquet files for fetches.
//! - [`maintenance`]: compaction and removal of files retention emptied.
//! - [`sql`]: read-only SQL over the tables (DataFusion).
//! - [`scan`]: the tables' files read for SQL, each version's columns
//!   matched to the current schema by field id.
//! - [`storage`]: Iceberg file IO over `object_store`, for tables in an S3
//!   API store.

pub mod archived;
pub mod catalog;
pub mod describe;
pub mod layout;
pub mod maintenance;
pub mod rest;
pub mod rows;
pub mod scan;
pub mod sql;
pub mod storage;
pub mod table;

pub use archived::{ArchiveReader, ArchivedRecord};
pub use catalog::{ArchiveIndex, CATALOG_NAME, FileRange, LakeCatalog};
pub use rows::{FramedAs, Framing, KafkaRow, MessageFormat, Skipped, Undecoded};
pub use storage::{
    ObjectStorage, ObjectStorageFactory, ObjectStoreConfig, ObjectStoreConfigError, object_file_io,
};
pub use table::{Lakehouse, TopicTable, table_name};

/// The local-filesystem FileIO for embedded mode.
pub fn local_file_io() -> iceberg::io::FileIO {
    iceberg::io::FileIO::new_with_fs()
}
