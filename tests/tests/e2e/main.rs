//! End-to-end tests: each test starts the real `sluice` binary on loopback
//! ports with a private data directory and drives it with real Kafka clients
//! (librdkafka, kcat, kafka-python, confluent-kafka) or raw sockets.

mod admin;
mod admin_apis;
mod authz;
mod bad_input;
mod cluster;
mod common;
mod dead_letters;
mod durability;
mod gateway;
mod groups;
mod groups_cli;
mod groups_python;
mod http_auth;
mod kcat;
mod lakehouse;
mod offsets;
mod ops;
mod policy;
mod produce_consume;
mod python;
mod raw;
mod record_errors;
mod registry;
mod retention;
mod sasl;
mod schema_evolution;
mod schema_matrix;
mod storage;
mod table_messages;
mod tls;
mod topic_configs;
mod transactions;
mod txn_checker;
