//! TLS for Kafka listeners.
