//! Topics as Iceberg tables: records to Parquet, Iceberg commits, the REST
//! catalog and SQL over topics.
//!
//! Not built yet: topics are currently kept as Kafka record-batch segments
//! only.
