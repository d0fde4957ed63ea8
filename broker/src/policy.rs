//! Purpose policies: placeholder with the module's API and pass-through
//! bodies, replaced by the real module (purposes, grants, sensitivity
//! classes) when it lands.

use bytes::Bytes;

use crate::meta::TopicRecord;
use crate::state::KafkaError;

/// Purposes, grants and sensitivity classes from config.
#[derive(Debug, Default)]
pub struct Policies;

impl Policies {
    /// The purpose declared in `client_id`, checked against `principal`'s grants.
    pub fn declared(&self, _principal: &str, _client_id: &str) -> Result<Option<Purpose>, String> {
        Ok(None)
    }
}

/// A purpose a consumer declares.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Purpose(pub String);

/// Rewrites fetched records for a purpose.
#[derive(Debug, Default)]
pub struct Redactor;

impl Redactor {
    /// Rewrites a partition's record batches for `purpose` (None = undeclared).
    /// Batches needing no change pass through untouched.
    pub async fn redact(
        &self,
        _topic: &TopicRecord,
        _partition: i32,
        records: Bytes,
        _purpose: Option<&Purpose>,
    ) -> Result<Bytes, KafkaError> {
        Ok(records)
    }
}
