//! The topic tables (Apache Iceberg, from the `sluice-lakehouse` crate):
//! the [`archiver`] turns committed batches into Parquet files committed to
//! each topic's table, and [`maintenance`] compacts small files, removes
//! files that retention emptied and expires old snapshots.
//!
//! May use: `node` (the broker's stores and cluster view), `log` (batch
//! parsing, reading batches back), `cluster` (archiver and upkeep leases)
//! and `store`.
//!
//! Contract: a table commit and the new archived positions are written in
//! one metadata transaction, so no offset is skipped or archived twice,
//! across crashes and when the archiver lease moves to another broker.

pub mod archiver;
pub mod maintenance;
