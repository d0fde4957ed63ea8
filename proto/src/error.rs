use thiserror::Error;

/// Everything that can go wrong in this crate. Each variant is a problem
/// with caller-supplied input (a schema, a record, a name), never a bug
/// signalled by panicking.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtoError {
    #[error("record is {len} bytes, too short for the 5-byte schema registry header")]
    FrameTooShort { len: usize },
    #[error("record starts with byte {0:#04x}, expected the schema registry magic byte 0x00")]
    BadMagicByte(u8),
    #[error("malformed message-index list in record header: {0}")]
    BadMessageIndexes(String),
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    #[error("invalid serialized schema descriptor: {0}")]
    InvalidDescriptor(String),
    #[error("invalid validation rule on {field}: {message}")]
    InvalidRule { field: String, message: String },
    #[error("schema defines no message types")]
    NoMessages,
    #[error("no message at index path {0:?} in the schema")]
    MessageIndexNotFound(Vec<i32>),
    #[error("malformed protobuf encoding: {0}")]
    Malformed(String),
    #[error("unknown compatibility level '{0}'")]
    UnknownCompatibility(String),
}
