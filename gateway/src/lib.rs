//! A Kafka-protocol proxy that brings validation and field policies to any
//! Kafka-compatible cluster.
//!
//! Not built yet.
