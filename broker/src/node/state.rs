//! Shared broker state handed to every connection and handler.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

use crate::common::{KafkaError, validate_topic_name};
use crate::coordinator::groups::Coordinator;
use crate::log::append::Appender;
use crate::node::config::Config;
use crate::policy::validation::Validator;
use crate::store::meta::{MetaStore, TopicRecord};
use crate::store::objects::Segments;
use crate::store::topic_config::TopicConfig;

pub struct Broker {
    pub config: Config,
    pub meta: MetaStore,
    pub segments: Segments,
    pub appender: Appender,
    pub groups: Arc<Coordinator>,
    /// The transaction coordinator.
    pub txns: Arc<crate::coordinator::transactions::Transactions>,
    /// Produce-time schema validation (and the schema registry behind it).
    pub validator: Validator,
    pub cluster_id: String,
    /// Bumped after every committed append; long-polling fetches wait on it.
    pub commits: watch::Receiver<u64>,
    /// Archived batches are read back from the topic tables.
    pub lake: crate::log::read::LakeReader,
    /// Field redaction by the reader's purpose, at fetch.
    pub redactor: crate::policy::purposes::Redactor,
    /// The other brokers sharing the stores, and the leases this one holds.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// SCRAM credentials (SASL and HTTP basic auth).
    pub credentials: crate::security::scram::Credentials,
    /// Kafka ACLs, asked before every action.
    pub authorizer: crate::security::acl::Authorizer,
    /// Purpose grants made with the admin API.
    pub purpose_grants: crate::security::grants::PurposeGrants,
    /// Client quotas (stored) and the usage this broker measured.
    pub quotas: crate::policy::quotas::Quotas,
    /// Topics by name, with when they were read from the metadata store.
    topics: RwLock<HashMap<String, (Arc<TopicRecord>, std::time::Instant)>>,
}

/// With other brokers sharing the store, a cached topic is read again
/// after this long, so topics they create, delete, grow or reconfigure are
/// seen here within it.
const SHARED_TOPIC_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// The services a broker is assembled from.
pub struct Parts {
    pub config: Config,
    pub meta: MetaStore,
    pub segments: Segments,
    pub appender: Appender,
    pub groups: Arc<Coordinator>,
    pub txns: Arc<crate::coordinator::transactions::Transactions>,
    pub validator: Validator,
    pub cluster_id: String,
    pub commits: watch::Receiver<u64>,
    pub lake: crate::log::read::LakeReader,
    pub cluster: Arc<crate::cluster::Cluster>,
}

impl Broker {
    pub fn new(p: Parts) -> Broker {
        Broker {
            credentials: crate::security::scram::Credentials::new(p.meta.clone()),
            authorizer: crate::security::acl::Authorizer::new(
                p.config.security.clone(),
                p.meta.clone(),
            ),
            purpose_grants: crate::security::grants::PurposeGrants::new(p.meta.clone()),
            quotas: crate::policy::quotas::Quotas::new(p.meta.clone()),
            redactor: crate::policy::purposes::Redactor::new(
                p.validator.clone(),
                p.config.policies.clone(),
                p.config.cache_bytes / 8,
            ),
            config: p.config,
            meta: p.meta,
            segments: p.segments,
            appender: p.appender,
            groups: p.groups,
            txns: p.txns,
            validator: p.validator,
            cluster_id: p.cluster_id,
            commits: p.commits,
            lake: p.lake,
            cluster: p.cluster,
            topics: RwLock::new(HashMap::new()),
        }
    }

    /// The address clients on `listener` are given for broker `b`: this
    /// broker's own listeners are known here; other brokers are reached at
    /// the address they registered (their first listener's).
    pub fn advertised(
        &self,
        b: &crate::cluster::LiveBroker,
        listener: crate::security::settings::Protocol,
    ) -> (String, i32) {
        if b.id == self.config.broker_id
            && let Some(l) = self
                .config
                .security
                .listeners
                .iter()
                .find(|l| l.protocol == listener)
        {
            return (l.advertised_host.clone(), l.advertised_port);
        }
        (b.host.clone(), b.port)
    }

    /// A topic by name, from the cache or the metadata store.
    pub async fn topic(&self, name: &str) -> Result<Option<Arc<TopicRecord>>, KafkaError> {
        if let Some(t) = self.cached(name) {
            return Ok(Some(t));
        }
        let found = self.meta.topic(name).await?;
        Ok(found.map(|t| self.remember(t)))
    }

    fn cached(&self, name: &str) -> Option<Arc<TopicRecord>> {
        // std RwLock: held only for a map lookup, never across an await.
        let (topic, read_at) = self.topics.read().ok()?.get(name).cloned()?;
        if read_at.elapsed() > SHARED_TOPIC_CACHE && self.cluster.live().len() > 1 {
            return None;
        }
        Some(topic)
    }

    fn remember(&self, t: TopicRecord) -> Arc<TopicRecord> {
        let t = Arc::new(t);
        if let Ok(mut map) = self.topics.write() {
            map.insert(t.name.clone(), (t.clone(), std::time::Instant::now()));
        }
        t
    }

    pub fn forget(&self, name: &str) {
        if let Ok(mut map) = self.topics.write() {
            map.remove(name);
        }
    }

    pub async fn topic_by_uuid(
        &self,
        uuid: uuid::Uuid,
    ) -> Result<Option<Arc<TopicRecord>>, KafkaError> {
        let found = self.meta.topic_by_uuid(uuid).await?;
        Ok(found.map(|t| self.remember(t)))
    }

    /// Reloads a topic after a change made through this broker.
    pub async fn refresh(&self, name: &str) -> Result<Option<Arc<TopicRecord>>, KafkaError> {
        self.forget(name);
        self.topic(name).await
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: &TopicConfig,
    ) -> Result<Arc<TopicRecord>, KafkaError> {
        validate_topic_name(name)?;
        let t = self.meta.create_topic(name, partitions, config).await?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(self.remember(t))
    }

    /// Looks a topic up, creating it when auto-creation is on and allowed.
    pub async fn topic_or_create(
        &self,
        name: &str,
        allow_create: bool,
    ) -> Result<Option<Arc<TopicRecord>>, KafkaError> {
        if let Some(t) = self.topic(name).await? {
            return Ok(Some(t));
        }
        if !(allow_create && self.config.auto_create_topics) {
            return Ok(None);
        }
        match self
            .create_topic(
                name,
                self.config.default_partitions,
                &TopicConfig::default(),
            )
            .await
        {
            Ok(t) => Ok(Some(t)),
            // Created concurrently by another request.
            Err(e) if e.code == ResponseError::TopicAlreadyExists => self.topic(name).await,
            Err(e) => Err(e),
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<TopicRecord, KafkaError> {
        let t = self.meta.delete_topic(name).await?;
        self.forget(name);
        tracing::info!(topic = name, "deleted topic");
        Ok(t)
    }
}

pub type SharedBroker = Arc<Broker>;

impl crate::log::read::Stores for Broker {
    fn meta(&self) -> &MetaStore {
        &self.meta
    }
    fn segments(&self) -> &Segments {
        &self.segments
    }
    fn lake(&self) -> &crate::log::read::LakeReader {
        &self.lake
    }
}
