//! The Sluice broker: a Kafka-protocol server whose data lives in an object
//! store (segments, then Parquet files in Iceberg topic tables) and whose
//! metadata (topics, offsets, the offset index) lives in SQLite or
//! PostgreSQL. Brokers keep no state of their own beyond caches.
//!
//! The modules are layers, lowest first: `common` (shared error and name
//! types), `store` (metadata store, segment objects), `cluster` (brokers,
//! leases), `log` (append, read, retention), `security`, `policy`
//! (validation, redaction, quotas), `coordinator` (consumer groups), `node`
//! (the assembled `Broker`), `lake` (topic tables), `kafka` (connections,
//! codec, handlers), `ops` (startup, shutdown, HTTP) and `cli`. A module
//! uses only its own layer and lower ones; the tests in `layers.rs` check
//! it. `broker/ARCHITECTURE.md` describes the layers and where new code
//! goes; the produce and fetch paths are drawn in [`log`].

pub mod cli;
pub mod cluster;
pub mod common;
pub mod coordinator;
pub mod kafka;
pub mod lake;
pub mod log;
pub mod node;
pub mod ops;
pub mod policy;
pub mod security;
pub mod store;

#[cfg(test)]
mod layers;
