//! The broker's policies for `sluice gateway`: produce records are checked
//! by the broker's own [`Validator`] and fetched records rewritten by its
//! [`Redactor`], so a record refused or redacted through the gateway gets
//! the same answer it would get from a Sluice broker.
//!
//! The gateway sees topics of a foreign cluster, not their Sluice topic
//! configs: every topic is checked as a Sluice topic with default configs
//! (reject mode; records Confluent-framed when `TOPIC-value` / `TOPIC-key`
//! has a live version in the registry).

use async_trait::async_trait;
use bytes::Bytes;
use sluice_gateway::{FetchRefusal, ProduceRefusal, RecordPolicy};
use uuid::Uuid;

use crate::log::batch;
use crate::policy::purposes::{Purpose, Redactor};
use crate::policy::validation::{Refusal, Validator};
use crate::store::meta::TopicRecord;
use crate::store::topic_config::TopicConfig;

/// The principal of gateway clients until the gateway authenticates them.
pub const GATEWAY_PRINCIPAL: &str = crate::security::ANONYMOUS;

/// [`RecordPolicy`] over the broker's validator, purpose policies and redactor.
pub struct BrokerPolicy {
    validator: Validator,
    /// Holds the purposes and grants too.
    redactor: Redactor,
}

impl BrokerPolicy {
    pub fn new(validator: Validator, redactor: Redactor) -> BrokerPolicy {
        BrokerPolicy {
            validator,
            redactor,
        }
    }
}

/// A topic of the upstream cluster as the broker's checks see it.
fn topic_record(topic: &str) -> TopicRecord {
    TopicRecord {
        id: 0,
        name: topic.to_owned(),
        uuid: Uuid::nil(),
        partitions: 0,
        config: TopicConfig::default(),
    }
}

fn produce_refusal(r: Refusal) -> ProduceRefusal {
    ProduceRefusal {
        error_code: r.code.code(),
        message: r.message,
        record_errors: r.record_errors,
    }
}

#[async_trait]
impl RecordPolicy for BrokerPolicy {
    async fn check_produce(
        &self,
        topic: &str,
        partition: i32,
        records: &Bytes,
    ) -> Result<(), ProduceRefusal> {
        // The upstream enforces its own size limits.
        let batches = batch::split_and_check(records, usize::MAX).map_err(|e| ProduceRefusal {
            error_code: e.kafka_error().code(),
            message: e.to_string(),
            record_errors: Vec::new(),
        })?;
        let record = topic_record(topic);
        for b in &batches {
            if let Err(rejection) = self.validator.check_batch(&record, &b.bytes).await {
                let refusal = Refusal::of(topic, partition, b.header.record_count, rejection);
                return Err(produce_refusal(refusal));
            }
        }
        Ok(())
    }

    fn purpose(&self, client_id: &str) -> Result<Option<String>, String> {
        self.redactor
            .policies()
            .declared(GATEWAY_PRINCIPAL, client_id)
            .map(|p| p.map(|Purpose(name)| name))
    }

    async fn redact_fetch(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
        purpose: Option<&str>,
    ) -> Result<Bytes, FetchRefusal> {
        let purpose = purpose.map(|p| Purpose(p.to_owned()));
        self.redactor
            .redact(&topic_record(topic), partition, records, purpose.as_ref())
            .await
            .map_err(|e| FetchRefusal {
                error_code: e.code.code(),
                message: e.message,
            })
    }
}
