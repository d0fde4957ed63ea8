//! The bottom layer: small types every other layer shares, so that none of
//! them has to reach up for them. It uses nothing else in the crate.
//!
//! - [`KafkaError`]: what a request fails with (a Kafka error code and a
//!   message for the client).
//! - [`validate_topic_name`]: Kafka's rule for topic names.
//! - [`addr`]: `HOST:PORT` flags.

pub mod addr;
mod error;

pub use error::{KafkaError, validate_topic_name};
