//! Confluent-compatible Schema Registry for Protobuf schemas.
//!
//! Producers and consumers register and fetch schemas over the same REST
//! API Confluent's registry offers; the broker serves [`Registry::router`]
//! on its own listener and, on the produce path, resolves the schema id in
//! each framed record through [`Registry::schema_by_id`] to validate it.
//! Persistence is behind [`SchemaStore`]: the broker implements it over its
//! metadata database, [`MemoryStore`] serves tests and standalone use, and
//! [`RemoteStore`] reads another registry over HTTP (the gateway's case).
//! Compilation, normalisation and compatibility rules live in
//! `sluice-proto`; this crate adds subjects, versions, settings and HTTP.

mod api;
mod error;
mod registry;
mod remote;
mod store;

pub use api::CONTENT_TYPE;
pub use error::RegistryError;
pub use registry::{
    Mode, PROTOBUF, Registry, SchemaSubmission, SubjectSchema, VersionDetails, VersionSpec,
};
pub use remote::RemoteStore;
pub use sluice_proto::{CompatibilityLevel, CompiledSchema};
pub use store::{
    MemoryStore, NewSchema, SchemaReference, SchemaStore, SettingKind, StoreFuture, StoredSchema,
    SubjectVersion,
};
