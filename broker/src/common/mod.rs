//! The bottom layer: small types every other layer shares, so that none of
//! them has to reach up for them. It uses nothing else in the crate.
//!
//! - [`KafkaError`]: what a request fails with (a Kafka error code and a
//!   message for the client).
//! - [`validate_topic_name`]: Kafka's rule for topic names.
//! - [`addr`]: `HOST:PORT` flags.
//!
//! Contract: plain values and functions, no I/O and no state, so any layer
//! may use them and a rule (such as the topic name check) is applied the
//! same way everywhere.

pub mod addr;
mod error;

pub use error::{KafkaError, validate_topic_name};
