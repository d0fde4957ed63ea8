//! Protobuf machinery for Sluice: schema compilation, record validation,
//! schema normalisation and compatibility, the Confluent wire framing, and
//! field redaction by policy.
//!
//! The broker calls into this crate on the produce path (unframe a record,
//! look up its message type, validate it) and the schema registry uses it
//! to compile, canonicalise and compare registered schemas. Nothing here
//! does I/O: schemas arrive as strings, records as byte slices.

mod compat;
mod embedded;
mod error;
mod framing;
mod normalize;
mod policy;
mod redact;
mod schema;
mod validate;

pub use compat::{CompatibilityLevel, check_compatibility, incompatibilities};
pub use embedded::{EMBEDDED_FILES, POLICY_PROTO, VALIDATE_PROTO, embedded_source};
pub use error::ProtoError;
pub use framing::{
    Frame, MAGIC_BYTE, MessageIndexes, decode_frame, encode_frame, encode_frame_header,
};
pub use normalize::canonical_text;
pub use policy::{FieldPolicy, field_policy, message_policy};
pub use redact::{Hidden, MASK, Redaction, hex};
pub use schema::{CompiledSchema, SchemaForm, compile, detect_form};
pub use validate::{Violation, map_key_value, validate};

/// Re-exported so callers name the same descriptor types this crate uses.
pub use prost_reflect;
