//! Storage: the metadata store and the segment objects, where all of a
//! broker's data lives (a broker itself keeps nothing but caches).
//!
//! - [`meta`]: `MetaStore` over SQLite or PostgreSQL: topics, partition
//!   offsets, the offset index, producer state and group state; it also
//!   runs the migrations (`broker/migrations`) for the tables that layers
//!   above keep there (brokers, leases, ACLs, credentials, quotas).
//! - [`objects`]: `Segments`, segment objects in a local directory or any
//!   object store, behind a cache of recent segments.
//! - [`txn`]: transaction state (transactional ids, the partitions and
//!   offsets of open transactions, aborted ranges per partition).
//! - [`topic_config`]: every topic config key, its default and its check.
//! - [`schema_store`]: the schema registry's storage in the metadata store.
//!
//! May use: `common` only.
//!
//! Contract: offsets are assigned inside the append transaction
//! (`begin_append` → `AppendTx::index` → `commit`), and the segment bytes a
//! batch points to are written before that transaction commits, so brokers
//! sharing the store never collide on offsets and never index missing data.
//! The same transaction decides each batch against its producer's stored
//! state (sequence numbers, the open transaction of its epoch), so no
//! broker's cache can let a duplicate or a fenced batch in.

pub mod meta;
pub mod objects;
pub mod schema_store;
pub mod topic_config;
pub mod txn;
