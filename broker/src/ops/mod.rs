//! The broker process: [`server`] (`run`: open the stores, join the
//! cluster, start the flusher, group coordinator, retention and archiver,
//! serve the Kafka listeners and HTTP interfaces, then shut down in order)
//! and [`http`] (health, readiness, metrics, SQL over topic tables, table
//! maintenance, and authentication and ACLs in front of the HTTP APIs).
//!
//! May use: `kafka`, `lake`, `node`, `coordinator`, `policy`, `security`,
//! `log`, `cluster` and `store`.
//!
//! Contract: the Kafka listeners accept only once everything else is up;
//! at shutdown, in-flight requests finish (queued batches are flushed and
//! answered) before the flusher stops and the broker leaves the cluster.

pub mod http;
pub mod server;
