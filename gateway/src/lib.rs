//! A Kafka-protocol proxy that brings validation and field policies to any
//! Kafka-compatible cluster.
//!
//! Clients connect to the gateway only; it forwards every request to the
//! upstream cluster over one upstream connection per client connection and
//! sends the answers back in request order. On the way it:
//!
//! * rewrites broker addresses in Metadata, FindCoordinator and
//!   DescribeCluster answers (and Produce leader endpoints) so clients keep
//!   talking to the gateway;
//! * checks every partition of a Produce request with
//!   [`RecordPolicy::check_produce`]: refused partitions are answered by the
//!   gateway with the policy's error, the others are forwarded;
//! * passes each partition of a Fetch answer through
//!   [`RecordPolicy::redact_fetch`] for the purpose the client declares;
//! * caps ApiVersions to the APIs and versions it can decode and rewrite
//!   (Fetch up to v12 and Produce up to v11, which name topics rather than
//!   topic ids).
//!
//! Other requests travel as raw bytes: only their header is looked at.
//!
//! # One port per upstream broker
//!
//! Clients cache broker addresses by node id, so each upstream broker gets
//! a gateway port of its own. The bootstrap listener (`kafka_addr`) forwards
//! to the configured upstream address. Upstream node `N` is served on port
//! `advertised_port + 1 + N` of the `kafka_addr` host, forwarding to that
//! node's own address, and advertised as `advertised_host` with that port.
//! A node's listener is bound when the node is first seen in an answer,
//! before the rewritten answer is sent. A node whose port would not fit in
//! 16 bits (or cannot be bound) is left out of answers, with a log line.
//!
//! The policy is a trait so that this crate does not depend on the broker:
//! the broker implements [`RecordPolicy`] with its own validator and
//! redactor and runs the gateway as `sluice gateway`.

mod connection;
mod error;
pub mod frame;
mod policy;
mod rewrite;
mod server;

pub use error::{GatewayError, Side};
pub use policy::{
    FetchRefusal, PassThrough, ProduceRefusal, RecordPolicy, TOPIC_AUTHORIZATION_FAILED,
};
pub use rewrite::{MAX_FETCH_VERSION, MAX_PRODUCE_VERSION};
pub use server::{Gateway, GatewayConfig, run};
