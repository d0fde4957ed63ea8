//! Confluent-compatible Schema Registry for Protobuf schemas.
//!
//! Not built yet: the registry API and compatibility checks come with
//! produce-time validation.
