//! The Sluice broker: a Kafka-protocol server whose data lives in an object
//! store and whose metadata (offsets, topics, the offset index) lives in a
//! database. Brokers keep no state of their own beyond caches.
//!
//! Layers, top to bottom: `server` (listener, shutdown) → `connection`
//! (framing, pipelining) → `codec` (bytes ↔ typed requests, no I/O) →
//! `handlers` (one file per Kafka API) → `append` / `read` (produce and fetch
//! paths) → `meta` (metadata store) and `objects` (segment objects).

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
