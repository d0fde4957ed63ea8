//! The Sluice broker: a Kafka-protocol server whose data lives in an object
//! store and whose metadata (offsets, topics, the offset index) lives in a
//! database. Brokers keep no state of their own beyond caches.
//!
//! Layers, top to bottom: `server` (listener, shutdown) → `connection`
//! (framing, pipelining) → `codec` (bytes ↔ typed requests, no I/O) →
//! `handlers` (one file per Kafka API) → `append` / `read` (produce and fetch
//! paths) → `meta` (metadata store) and `objects` (segment objects).

pub mod access_cli;
pub mod acl;
pub mod append;
pub mod archiver;
pub mod batch;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod connection;
pub mod dead_letter;
pub mod gateway_policy;
pub mod grants;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod http_auth;
pub mod maintenance;
pub mod meta;
pub mod objects;
pub mod policy;
pub mod quotas;
pub mod quotas_cli;
pub mod read;
pub mod retention;
pub mod sasl;
pub mod schema_store;
pub mod scram;
pub mod security;
pub mod server;
pub mod state;
pub mod tls;
pub mod topic_config;
pub mod validation;
