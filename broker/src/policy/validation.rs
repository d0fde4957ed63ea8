//! Produce-time validation: every record of a schema-bound topic is decoded
//! and checked against its Protobuf schema and the rules declared in it
//! before the batch is queued for storage.
//!
//! Binding: topic `T` is bound to subject `T-value` (and `T-key`) when that
//! subject has a live version in the registry. Records then carry the
//! Confluent framing (magic byte, schema id, message indexes), and the id
//! must be registered under that subject. With the topic config
//! `sluice.value.message.type` (or `sluice.key.message.type`) set to a
//! fully-qualified message name, records are raw Protobuf of that type,
//! checked against the subject's latest version. Topics without a bound
//! subject accept any bytes.
//!
//! What happens to a batch with invalid records is the topic's
//! `sluice.validation.mode`: `reject` (the default) refuses it whole
//! (INVALID_RECORD, with one error per bad record; other batches of the same
//! request are unaffected); `dlq` stores the valid records and sends the
//! invalid ones to a dead-letter topic (see [`crate::log::dead_letter`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use sluice_proto::prost_reflect::MessageDescriptor;
use sluice_proto::{CompiledSchema, MessageIndexes};
use sluice_schema_registry::{Registry, RegistryError};

use crate::store::meta::TopicRecord;

pub use crate::store::topic_config::{
    DLQ_TOPIC, KEY_MESSAGE_TYPE, VALIDATION_MODE, VALUE_MESSAGE_TYPE,
};

/// What a topic does with a batch holding invalid records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Refuse the batch whole.
    Reject,
    /// Store the valid records; send the invalid ones to this topic.
    DeadLetter(String),
}

impl Mode {
    pub fn of(topic: &TopicRecord) -> Mode {
        if topic.config.get(VALIDATION_MODE) != "dlq" {
            return Mode::Reject;
        }
        match topic.config.get(DLQ_TOPIC) {
            "" => Mode::DeadLetter(format!("{}.dlq", topic.name)),
            name => Mode::DeadLetter(name.to_owned()),
        }
    }
}

/// How long a topic's binding (which subjects exist) is reused before it is
/// looked up again; registering a subject takes effect within this time.
const BINDING_TTL: Duration = Duration::from_secs(2);

/// One side (key or value) of a topic bound to a subject.
#[derive(Clone)]
pub enum Side {
    /// Confluent-framed records; any live version's id of the subject.
    Framed { subject: String },
    /// Raw Protobuf of one message type from the subject's latest version.
    Raw {
        subject: String,
        schema: Arc<CompiledSchema>,
        message: MessageDescriptor,
    },
}

impl Side {
    pub fn subject(&self) -> &str {
        match self {
            Side::Framed { subject } | Side::Raw { subject, .. } => subject,
        }
    }
}

#[derive(Clone, Default)]
struct Binding {
    key: Option<Side>,
    value: Option<Side>,
}

/// Schemas resolved while checking one batch: (subject, id, message path, result).
type Memo = Vec<(
    String,
    u32,
    MessageIndexes,
    Result<(Arc<CompiledSchema>, MessageDescriptor), String>,
)>;

fn invalid_batch(message: String) -> Rejection {
    Rejection::Batch(format!("cannot read the record batch: {message}"))
}

/// Why a batch was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Records break the schema (INVALID_RECORD; retrying will not help).
    /// Listed in ascending index order.
    Invalid(Vec<RecordError>),
    /// The batch as a whole cannot be checked: it cannot be read, or the
    /// topic's binding is misconfigured (INVALID_RECORD for every record,
    /// none listed: no record can be told apart from the others).
    Batch(String),
    /// The registry could not be read (retriable).
    Unavailable(String),
}

/// How a refused batch is answered: the partition's error code and message,
/// and the per-record errors. The broker's produce handler and the gateway
/// both answer with this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ResponseError,
    pub message: String,
    /// (index of the record in its batch, reason), in ascending index order.
    pub record_errors: Vec<(i32, String)>,
}

impl Refusal {
    /// The answer to `rejection` of a batch of `record_count` records
    /// produced to `topic` / `partition`, in reject mode.
    pub fn of(topic: &str, partition: i32, record_count: i32, rejection: Rejection) -> Refusal {
        match rejection {
            Rejection::Unavailable(message) => {
                tracing::warn!(topic, %message, "cannot validate; asking the producer to retry");
                Refusal {
                    code: ResponseError::KafkaStorageError,
                    message,
                    record_errors: Vec::new(),
                }
            }
            Rejection::Batch(message) => Refusal::whole_batch(topic, partition, message),
            Rejection::Invalid(errors) => {
                Refusal::invalid_records(topic, partition, record_count, errors, None)
            }
        }
    }

    /// INVALID_RECORD for a batch that cannot be checked record by record.
    /// No record errors are listed: as with Kafka's batch-level failures,
    /// every record of the batch fails with the partition's error (a
    /// record error at index 0 would make clients such as librdkafka fail
    /// the first record as invalid and the others as collateral).
    pub fn whole_batch(topic: &str, partition: i32, message: String) -> Refusal {
        metrics::counter!("sluice_validation_rejected_batches_total", "topic" => topic.to_owned())
            .increment(1);
        tracing::info!(topic, partition, %message, "rejected a batch that cannot be checked");
        Refusal {
            code: ResponseError::InvalidRecord,
            message,
            record_errors: Vec::new(),
        }
    }

    /// INVALID_RECORD with one error per invalid record; `note` says why a
    /// `dlq`-mode topic had to refuse instead.
    pub fn invalid_records(
        topic: &str,
        partition: i32,
        record_count: i32,
        errors: Vec<RecordError>,
        note: Option<&str>,
    ) -> Refusal {
        metrics::counter!("sluice_validation_rejected_batches_total", "topic" => topic.to_owned())
            .increment(1);
        metrics::counter!("sluice_validation_rejected_records_total", "topic" => topic.to_owned())
            .increment(errors.len() as u64);
        let Some(first) = errors.first() else {
            return Refusal {
                code: ResponseError::InvalidRecord,
                message: note.unwrap_or_default().to_owned(),
                record_errors: Vec::new(),
            };
        };
        let mut summary = format!(
            "{} of {} records failed validation against the topic's schema; record {}: {}",
            errors.len(),
            record_count,
            first.index,
            first.message
        );
        if let Some(note) = note {
            summary = format!("{note}; {summary}");
        }
        tracing::info!(topic, partition, %summary, "rejected invalid records");
        Refusal {
            code: ResponseError::InvalidRecord,
            message: summary,
            record_errors: errors.into_iter().map(|e| (e.index, e.message)).collect(),
        }
    }
}

/// One invalid record: its index in the batch and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub index: i32,
    pub message: String,
    /// The subject of the schema it was checked against (the first one it
    /// failed, when both key and value did).
    pub subject: Option<String>,
}

/// Cheap to clone; clones share the caches.
#[derive(Clone)]
pub struct Validator {
    registry: Registry,
    bindings: moka::future::Cache<String, Arc<Binding>>,
    /// (subject, schema id) → whether the id is a live version of the subject.
    memberships: moka::future::Cache<(String, u32), bool>,
}

impl Validator {
    pub fn new(registry: Registry) -> Validator {
        Validator {
            registry,
            bindings: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(BINDING_TTL)
                .build(),
            memberships: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
        }
    }

    /// The schema registry the validator reads.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    async fn side(
        &self,
        topic: &TopicRecord,
        suffix: &str,
        type_key: &str,
    ) -> Result<Option<Side>, Rejection> {
        let subject = format!("{}-{suffix}", topic.name);
        let latest = match self.registry.latest_for_subject(&subject).await {
            Ok(s) => s,
            Err(RegistryError::SubjectNotFound(_)) => return Ok(None),
            Err(e) => {
                return Err(Rejection::Unavailable(format!(
                    "cannot read subject '{subject}': {e}"
                )));
            }
        };
        let raw_type = topic.config.get(type_key);
        if raw_type.is_empty() {
            return Ok(Some(Side::Framed { subject }));
        }
        let message = latest
            .schema
            .pool()
            .get_message_by_name(raw_type)
            .ok_or_else(|| {
                Rejection::Batch(format!(
                    "topic config {type_key}={raw_type}, but subject '{subject}' version {} has no such message",
                    latest.version
                ))
            })?;
        Ok(Some(Side::Raw {
            subject,
            schema: latest.schema,
            message,
        }))
    }

    async fn binding(&self, topic: &TopicRecord) -> Result<Arc<Binding>, Rejection> {
        if let Some(b) = self.bindings.get(&topic.name).await {
            return Ok(b);
        }
        let b = Arc::new(Binding {
            key: self.side(topic, "key", KEY_MESSAGE_TYPE).await?,
            value: self.side(topic, "value", VALUE_MESSAGE_TYPE).await?,
        });
        self.bindings.insert(topic.name.clone(), b.clone()).await;
        Ok(b)
    }

    /// The (key, value) sides of the topic that are bound to a subject.
    pub async fn sides(
        &self,
        topic: &TopicRecord,
    ) -> Result<(Option<Side>, Option<Side>), Rejection> {
        let b = self.binding(topic).await?;
        Ok((b.key.clone(), b.value.clone()))
    }

    async fn id_in_subject(&self, subject: &str, id: u32) -> Result<bool, String> {
        let key = (subject.to_string(), id);
        if let Some(v) = self.memberships.get(&key).await {
            return Ok(v);
        }
        let rows = self
            .registry
            .store()
            .versions_by_schema(id)
            .await
            .map_err(|e| format!("cannot read schema {id}: {e}"))?;
        let member = rows.iter().any(|r| r.subject == subject && !r.deleted);
        self.memberships.insert(key, member).await;
        Ok(member)
    }

    async fn check_one(
        &self,
        side: &Side,
        what: &str,
        data: Option<&[u8]>,
        memo: &mut Memo,
    ) -> Result<(), String> {
        let Some(data) = data else {
            return Err(format!(
                "{what} is null but the topic requires a schema-valid {what}"
            ));
        };
        match side {
            Side::Raw {
                schema, message, ..
            } => schema
                .validate(message, data)
                .map_err(|v| join_violations(what, &v)),
            Side::Framed { subject } => {
                let frame = sluice_proto::decode_frame(data).map_err(|e| {
                    format!("{what} is not in the schema registry wire format: {e}")
                })?;
                // Records of one batch nearly always share a schema: resolve
                // each (subject, id, message path) once per batch, found
                // again without allocating.
                let found = memo.iter().position(|(s, id, idx, _)| {
                    *id == frame.schema_id && idx == &frame.message_indexes && s == subject
                });
                let slot = match found {
                    Some(i) => i,
                    None => {
                        let resolved = self
                            .resolve(subject, frame.schema_id, &frame.message_indexes)
                            .await;
                        memo.push((
                            subject.clone(),
                            frame.schema_id,
                            frame.message_indexes.clone(),
                            resolved,
                        ));
                        memo.len() - 1
                    }
                };
                let (schema, message) = memo[slot].3.as_ref().map_err(|e| format!("{what} {e}"))?;
                schema
                    .validate(message, frame.payload)
                    .map_err(|v| join_violations(what, &v))
            }
        }
    }

    async fn resolve(
        &self,
        subject: &str,
        id: u32,
        indexes: &[i32],
    ) -> Result<(Arc<CompiledSchema>, MessageDescriptor), String> {
        if !self.id_in_subject(subject, id).await? {
            return Err(format!(
                "uses schema id {id} which is not registered under subject '{subject}'"
            ));
        }
        let schema = self
            .registry
            .schema_by_id(id)
            .await
            .map_err(|e| format!("uses schema id {id}: {e}"))?;
        let message = schema
            .message_by_indexes(indexes)
            .map_err(|e| format!("uses schema id {id}: {e}"))?;
        Ok((schema, message))
    }

    /// Checks every record of one batch. `Err` lists the invalid records
    /// (or, when the batch itself cannot be read, says why).
    pub async fn check_batch(&self, topic: &TopicRecord, batch: &Bytes) -> Result<(), Rejection> {
        let binding = self.binding(topic).await?;
        if binding.key.is_none() && binding.value.is_none() {
            return Ok(());
        }
        let header =
            crate::log::batch::parse_header(batch).map_err(|e| invalid_batch(e.to_string()))?;
        let section = crate::log::batch::records_section(batch, &header)
            .map_err(|e| invalid_batch(e.to_string()))?;
        let mut errors = Vec::new();
        let mut memo = Memo::new();
        for (i, r) in crate::log::batch::Records::new(&section, header.record_count).enumerate() {
            let r = r.map_err(|e| invalid_batch(e.to_string()))?;
            let mut problems = Vec::new();
            let mut subject = None;
            if let Some(side) = &binding.value
                && let Err(e) = self.check_one(side, "value", r.value, &mut memo).await
            {
                problems.push(e);
                subject = Some(side.subject());
            }
            if let Some(side) = &binding.key
                && let Err(e) = self.check_one(side, "key", r.key, &mut memo).await
            {
                problems.push(e);
                subject = subject.or(Some(side.subject()));
            }
            if !problems.is_empty() {
                errors.push(RecordError {
                    index: i as i32,
                    message: problems.join("; "),
                    subject: subject.map(str::to_owned),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Rejection::Invalid(errors))
        }
    }
}

fn join_violations(what: &str, v: &[sluice_proto::Violation]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("invalid {what}: {}", parts.join("; "))
}
