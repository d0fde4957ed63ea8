//! What the gateway asks of the policy layer. The gateway itself knows no
//! schemas or purposes: the broker crate implements [`RecordPolicy`] with its
//! own validator and redactor, so a record refused or redacted through the
//! gateway is refused or redacted exactly as the broker would.

use async_trait::async_trait;
use bytes::Bytes;

/// Error code sent for every partition of a Fetch from a client whose
/// declared purpose is refused (TOPIC_AUTHORIZATION_FAILED).
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

/// Why one partition of a Produce request is refused; the gateway answers it
/// with these fields and does not forward the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRefusal {
    /// The Kafka error code (for invalid records, INVALID_RECORD).
    pub error_code: i16,
    /// The partition's `error_message`.
    pub message: String,
    /// Per-record errors: (index of the record in its batch, reason).
    pub record_errors: Vec<(i32, String)>,
}

/// Why one partition of a Fetch response is withheld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRefusal {
    pub error_code: i16,
    pub message: String,
}

/// The checks and rewrites the gateway applies to records passing through.
///
/// Contract: `check_produce` is called once per partition of every Produce
/// request, in request order, before anything of the request is forwarded;
/// `redact_fetch` is called once per partition that carries records in a
/// Fetch response, before the response is sent on. Implementations should
/// cache what they look up (schemas, bindings): they run on every request.
#[async_trait]
pub trait RecordPolicy: Send + Sync + 'static {
    /// Checks one partition's produce records (a record set: one or more
    /// record batches as the client sent them).
    async fn check_produce(
        &self,
        topic: &str,
        partition: i32,
        records: &Bytes,
    ) -> Result<(), ProduceRefusal>;

    /// The purpose a client declares in its client.id (`purpose=NAME` as one
    /// comma-separated key=value item), checked against grants.
    /// `Ok(None)`: no purpose declared. `Err(message)`: refused (unknown or
    /// not granted).
    fn purpose(&self, client_id: &str) -> Result<Option<String>, String>;

    /// Rewrites one partition's fetched records (record batches as returned
    /// by upstream) for the purpose. Returns the records to send on.
    async fn redact_fetch(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
        purpose: Option<&str>,
    ) -> Result<Bytes, FetchRefusal>;
}

/// A policy that accepts every record and redacts nothing: the gateway as a
/// plain address-rewriting proxy.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

#[async_trait]
impl RecordPolicy for PassThrough {
    async fn check_produce(&self, _: &str, _: i32, _: &Bytes) -> Result<(), ProduceRefusal> {
        Ok(())
    }

    fn purpose(&self, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }

    async fn redact_fetch(
        &self,
        _: &str,
        _: i32,
        records: Bytes,
        _: Option<&str>,
    ) -> Result<Bytes, FetchRefusal> {
        Ok(records)
    }
}
