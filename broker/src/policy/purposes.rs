//! Field policies by consumer purpose.
//!
//! Schemas mark fields with `(sluice.policy.v1.field)`: the purposes that
//! may read them and a sensitivity class. The policy file (`--policy-file`)
//! says which purposes exist, which purposes each sensitivity class is
//! granted to, which principals may declare which purposes, and what a
//! purpose gets instead of a field it may not read (`drop`, `mask`, `hash`).
//!
//! A consumer declares its purpose as one `purpose=NAME` item of its
//! `client.id` (`client.id=crm-sync,purpose=billing`), which every Kafka
//! client can set. At fetch, the [`Redactor`] rewrites each record of a
//! schema-bound topic so it holds only what that purpose may read, keeping
//! the Confluent framing: the result parses with the same schema. A
//! consumer that declares no purpose reads only unrestricted fields.
//!
//! A field is visible to purpose P when both hold:
//! - its `purposes` list is empty or names P;
//! - its `sensitivity` is empty or `public`, or the policy file grants that
//!   class to P. A class the policy file does not mention is granted to no
//!   purpose: an unknown class fails closed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use serde::Deserialize;
use sluice_lakehouse::sql::{Guards, TableGuard};
use sluice_proto::prost_reflect::{FieldDescriptor, MessageDescriptor};
use sluice_proto::{CompiledSchema, Hidden, MessageIndexes, Redaction, field_policy};

use crate::common::KafkaError;
use crate::log::batch;
use crate::policy::validation::{Side, Validator};
use crate::store::meta::TopicRecord;

/// The sensitivity class that is never restricted.
const PUBLIC: &str = "public";

/// A purpose a reader declared and was allowed to declare.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Purpose(pub String);

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The policy file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    /// Every purpose a reader may declare.
    #[serde(default)]
    purposes: Vec<String>,
    /// What a reader gets instead of a field it may not read (default drop).
    action: Option<String>,
    /// Per-purpose overrides of `action`.
    #[serde(default)]
    actions: BTreeMap<String, String>,
    /// Sensitivity class → purposes granted it.
    #[serde(default)]
    sensitivity: BTreeMap<String, Vec<String>>,
    /// Principal → purposes it may declare. Without this table, any
    /// principal may declare any purpose.
    grants: Option<BTreeMap<String, Vec<String>>>,
}

/// Purposes, grants and sensitivity classes, resolved from the policy file.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// Known purposes and what each gets instead of a hidden field.
    purposes: BTreeMap<String, Hidden>,
    /// What a reader without a purpose gets instead of a hidden field.
    undeclared: Hidden,
    classes: HashMap<String, HashSet<String>>,
    grants: Option<HashMap<String, HashSet<String>>>,
}

impl Policies {
    /// Reads the policy file; no file means no purposes (readers see
    /// unrestricted fields only, and declaring a purpose is refused).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Policies> {
        let Some(path) = path else {
            return Ok(Policies::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read policy file {}", path.display()))?;
        Policies::parse(&text).with_context(|| format!("invalid policy file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Policies> {
        let file: PolicyFile = toml::from_str(text)?;
        let undeclared = match &file.action {
            Some(a) => a.parse().map_err(anyhow::Error::msg)?,
            None => Hidden::Drop,
        };
        let mut purposes = BTreeMap::new();
        for p in &file.purposes {
            check_name("purpose", p)?;
            purposes.insert(p.clone(), undeclared);
        }
        let names: HashSet<String> = purposes.keys().cloned().collect();
        let known = |what: &str, p: &str| -> anyhow::Result<()> {
            if names.contains(p) {
                Ok(())
            } else {
                anyhow::bail!("{what} names purpose '{p}', which is not in `purposes`")
            }
        };
        for (p, action) in &file.actions {
            known("actions", p)?;
            let how = action.parse().map_err(anyhow::Error::msg)?;
            purposes.insert(p.clone(), how);
        }
        let mut classes = HashMap::new();
        for (class, granted) in &file.sensitivity {
            for p in granted {
                known(&format!("sensitivity.{class}"), p)?;
            }
            classes.insert(class.clone(), granted.iter().cloned().collect());
        }
        let grants = match &file.grants {
            None => None,
            Some(g) => {
                let mut out = HashMap::new();
                for (principal, granted) in g {
                    for p in granted {
                        known(&format!("grants.\"{principal}\""), p)?;
                    }
                    out.insert(principal.clone(), granted.iter().cloned().collect());
                }
                Some(out)
            }
        };
        Ok(Policies {
            purposes,
            undeclared,
            classes,
            grants,
        })
    }

    /// Checks that `principal` may read for `purpose`.
    pub fn allow(&self, principal: &str, purpose: &str) -> Result<Purpose, String> {
        self.allow_granted(principal, purpose, &crate::security::grants::Granted::new())
    }

    /// As [`Policies::allow`], with grants from the metadata store too:
    /// once any grant exists (in the file or the store), a principal may
    /// declare only the purposes granted to it in either.
    pub fn allow_granted(
        &self,
        principal: &str,
        purpose: &str,
        stored: &crate::security::grants::Granted,
    ) -> Result<Purpose, String> {
        if !self.purposes.contains_key(purpose) {
            let known: Vec<&str> = self.purposes.keys().map(String::as_str).collect();
            return Err(if known.is_empty() {
                format!("purpose '{purpose}' is unknown: no purposes are configured")
            } else {
                format!(
                    "purpose '{purpose}' is unknown; known purposes: {}",
                    known.join(", ")
                )
            });
        }
        let restricted = self.grants.is_some() || !stored.is_empty();
        let in_file = self
            .grants
            .as_ref()
            .is_some_and(|g| g.get(principal).is_some_and(|g| g.contains(purpose)));
        let in_store = stored.get(principal).is_some_and(|g| g.contains(purpose));
        if restricted && !in_file && !in_store {
            return Err(format!(
                "principal {principal} is not granted purpose '{purpose}'"
            ));
        }
        Ok(Purpose(purpose.to_owned()))
    }

    /// The purpose declared in `client_id`, checked against `principal`'s
    /// grants. `Ok(None)`: no purpose declared.
    pub fn declared(&self, principal: &str, client_id: &str) -> Result<Option<Purpose>, String> {
        self.declared_granted(
            principal,
            client_id,
            &crate::security::grants::Granted::new(),
        )
    }

    /// As [`Policies::declared`], with the metadata store's grants too.
    pub fn declared_granted(
        &self,
        principal: &str,
        client_id: &str,
        stored: &crate::security::grants::Granted,
    ) -> Result<Option<Purpose>, String> {
        match declared_purpose(client_id)? {
            None => Ok(None),
            Some(p) => self.allow_granted(principal, p, stored).map(Some),
        }
    }

    /// The policy file's `[grants]`, if it has the table.
    pub fn file_grants(&self) -> Option<BTreeMap<String, Vec<String>>> {
        self.grants.as_ref().map(|g| {
            g.iter()
                .map(|(p, set)| {
                    let mut v: Vec<String> = set.iter().cloned().collect();
                    v.sort();
                    (p.clone(), v)
                })
                .collect()
        })
    }

    /// Whether `purpose` is one the policy file names.
    pub fn knows(&self, purpose: &str) -> bool {
        self.purposes.contains_key(purpose)
    }

    /// What `purpose` gets instead of `field`, or `None` when it may read it.
    pub fn hidden(&self, purpose: Option<&Purpose>, field: &FieldDescriptor) -> Option<Hidden> {
        let policy = field_policy(field)?;
        let name = purpose.map(|p| p.0.as_str());
        let by_purpose = policy.purposes.is_empty()
            || name.is_some_and(|n| policy.purposes.iter().any(|p| p == n));
        let by_class = policy.sensitivity.is_empty()
            || policy.sensitivity == PUBLIC
            || name.is_some_and(|n| {
                self.classes
                    .get(&policy.sensitivity)
                    .is_some_and(|granted| granted.contains(n))
            });
        if by_purpose && by_class {
            return None;
        }
        Some(match name {
            Some(n) => self.purposes.get(n).copied().unwrap_or(Hidden::Drop),
            None => self.undeclared,
        })
    }

    /// The known purposes.
    pub fn purposes(&self) -> impl Iterator<Item = &str> {
        self.purposes.keys().map(String::as_str)
    }
}

fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        anyhow::bail!("{what} '{name}' must be letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

/// The `purpose=NAME` item of a client id (`crm-sync,purpose=billing`).
pub fn declared_purpose(client_id: &str) -> Result<Option<&str>, String> {
    let mut found = None;
    for item in client_id.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        if key.trim() != "purpose" {
            continue;
        }
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("client.id '{client_id}' declares an empty purpose"));
        }
        if found.is_some() {
            return Err(format!(
                "client.id '{client_id}' declares more than one purpose"
            ));
        }
        found = Some(value);
    }
    Ok(found)
}

/// True when some field or message of the schema carries a policy, so its
/// records may need redaction for some reader.
fn has_policies(schema: &CompiledSchema) -> bool {
    schema.pool().all_messages().any(|m| {
        sluice_proto::message_policy(&m).is_some() || m.fields().any(|f| field_policy(&f).is_some())
    })
}

/// How long a topic's "does any of its schemas carry a policy" answer is
/// reused; a schema registered with policies applies within this time.
const POLICY_CHECK_TTL: Duration = Duration::from_secs(2);

/// Redacted batches are cached by this key. The CRC tells apart batches
/// that reused an offset (a topic deleted and created again).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BatchKey {
    topic: String,
    partition: i32,
    base_offset: i64,
    crc: u32,
    purpose: Option<Purpose>,
}

/// A prepared redaction is cached by schema, message and purpose.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PlanKey {
    Framed(u32, Vec<i32>, Option<Purpose>),
    Raw(String, Option<Purpose>),
}

/// Rewrites fetched record batches for a reader's purpose.
pub struct Redactor {
    policies: Arc<Policies>,
    validator: Validator,
    /// Topic → whether any schema of its subjects carries a policy.
    guarded: moka::future::Cache<String, bool>,
    plans: moka::sync::Cache<PlanKey, Plan>,
    /// Redacted batches; `None` marks a batch that needs no change.
    batches: moka::sync::Cache<BatchKey, Option<Bytes>>,
}

impl Redactor {
    pub fn new(validator: Validator, policies: Arc<Policies>, cache_bytes: u64) -> Redactor {
        Redactor {
            policies,
            validator,
            guarded: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(POLICY_CHECK_TTL)
                .build(),
            plans: moka::sync::Cache::new(10_000),
            batches: moka::sync::Cache::builder()
                .weigher(|_, v: &Option<Bytes>| {
                    u32::try_from(v.as_ref().map_or(64, Bytes::len)).unwrap_or(u32::MAX)
                })
                .max_capacity(cache_bytes)
                .build(),
        }
    }

    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// Whether records of `topic` may need redaction for some reader.
    async fn is_guarded(&self, topic: &TopicRecord) -> Result<bool, KafkaError> {
        if let Some(v) = self.guarded.get(&topic.name).await {
            return Ok(v);
        }
        let (key, value) = self.validator.sides(topic).await.map_err(rejection)?;
        let mut guarded = false;
        for side in [key, value].into_iter().flatten() {
            let subject = side.subject().to_owned();
            let registry = self.validator.registry();
            let versions = registry
                .store()
                .versions(subject.clone())
                .await
                .map_err(|e| unavailable(format!("cannot read subject '{subject}': {e}")))?;
            for v in versions {
                let schema = registry
                    .schema_by_id(v.schema_id)
                    .await
                    .map_err(|e| unavailable(format!("cannot read schema {}: {e}", v.schema_id)))?;
                if has_policies(&schema) {
                    guarded = true;
                }
            }
        }
        self.guarded.insert(topic.name.clone(), guarded).await;
        Ok(guarded)
    }

    /// Rewrites a partition's record batches for `purpose` (`None`: no
    /// purpose declared). Batches that need no change pass through as they
    /// are; records that cannot be read with the topic's schema lose the
    /// side (key or value) that cannot be read, so nothing unchecked
    /// reaches a restricted reader.
    pub async fn redact(
        &self,
        topic: &TopicRecord,
        partition: i32,
        records: Bytes,
        purpose: Option<&Purpose>,
    ) -> Result<Bytes, KafkaError> {
        if records.is_empty() || !self.is_guarded(topic).await? {
            return Ok(records);
        }
        let (key_side, value_side) = self.validator.sides(topic).await.map_err(rejection)?;
        // Built only once a batch changes: until then the answer is the
        // input itself, not a copy.
        let mut out: Option<Vec<u8>> = None;
        let mut pos = 0usize;
        while pos < records.len() {
            let start = pos;
            let rest = records.slice(pos..);
            let Ok(header) = batch::parse_stored_header(&rest) else {
                // A partial batch at the end of a size-limited fetch: the
                // client drops it; send it on as Kafka does.
                break;
            };
            let end = 12 + header.batch_length as usize;
            if end > rest.len() {
                break;
            }
            let one = rest.slice(..end);
            pos += end;
            let done = if header.is_control() {
                None
            } else {
                let key = BatchKey {
                    topic: topic.name.clone(),
                    partition,
                    base_offset: i64::from_be_bytes(one[..8].try_into().unwrap_or_default()),
                    crc: u32::from_be_bytes(one[17..21].try_into().unwrap_or_default()),
                    purpose: purpose.cloned(),
                };
                match self.batches.get(&key) {
                    Some(done) => done,
                    None => {
                        let done = self
                            .redact_batch(
                                &one,
                                header,
                                key_side.as_ref(),
                                value_side.as_ref(),
                                purpose,
                            )
                            .await?;
                        self.batches.insert(key, done.clone());
                        done
                    }
                }
            };
            match (done, &mut out) {
                (None, None) => {}
                (None, Some(out)) => out.extend_from_slice(&one),
                (Some(rewritten), Some(out)) => out.extend_from_slice(&rewritten),
                (Some(rewritten), slot @ None) => {
                    let mut v = Vec::with_capacity(records.len());
                    v.extend_from_slice(&records[..start]);
                    v.extend_from_slice(&rewritten);
                    *slot = Some(v);
                }
            }
        }
        Ok(match out {
            None => records,
            Some(mut out) => {
                out.extend_from_slice(&records[pos..]);
                out.into()
            }
        })
    }

    /// The batch rewritten for `purpose`, or `None` when it needs no change.
    async fn redact_batch(
        &self,
        one: &Bytes,
        mut header: batch::BatchHeader,
        key_side: Option<&Side>,
        value_side: Option<&Side>,
        purpose: Option<&Purpose>,
    ) -> Result<Option<Bytes>, KafkaError> {
        let corrupt = |e: batch::BatchError| {
            KafkaError::new(
                ResponseError::CorruptMessage,
                format!("cannot read a stored batch: {e}"),
            )
        };
        let section = batch::records_section(one, &header).map_err(corrupt)?;
        let mut memo: Vec<Memo> = Vec::new();
        let mut rebuilt = Vec::with_capacity(section.len());
        let mut changed = false;
        // Scratch space reused for every record of the batch.
        let (mut key_buf, mut value_buf, mut body) = (Vec::new(), Vec::new(), Vec::new());
        for r in batch::Records::new(&section, header.record_count) {
            let r = r.map_err(corrupt)?;
            let key = self
                .redact_side(
                    RecordSide::Key,
                    key_side,
                    r.key,
                    purpose,
                    &mut memo,
                    &mut key_buf,
                )
                .await;
            let value = self
                .redact_side(
                    RecordSide::Value,
                    value_side,
                    r.value,
                    purpose,
                    &mut memo,
                    &mut value_buf,
                )
                .await;
            if matches!((key, value), (Rewritten::Same, Rewritten::Same)) {
                rebuilt.extend_from_slice(r.raw);
                continue;
            }
            changed = true;
            let k = pick(key, r.key, &key_buf);
            let v = pick(value, r.value, &value_buf);
            batch::encode_record_with_headers(
                &mut rebuilt,
                &mut body,
                r.timestamp_delta,
                r.offset_delta,
                k,
                v,
                r.rest,
            );
        }
        if !changed {
            return Ok(None);
        }
        // Rewritten batches go out uncompressed: recompressing would cost
        // more CPU than the bytes it saves on a broker's network.
        header.attributes &= !0x07;
        let bytes = batch::encode_batch(&mut header, &rebuilt).map_err(corrupt)?;
        let mut framed = bytes.to_vec();
        // Same base offset and leader epoch as the batch it replaces.
        framed[..8].copy_from_slice(&one[..8]);
        framed[12..16].copy_from_slice(&one[12..16]);
        Ok(Some(framed.into()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn redact_side(
        &self,
        which: RecordSide,
        side: Option<&Side>,
        data: Option<&[u8]>,
        purpose: Option<&Purpose>,
        memo: &mut Vec<Memo>,
        out: &mut Vec<u8>,
    ) -> Rewritten {
        let (Some(side), Some(data)) = (side, data) else {
            return Rewritten::Same;
        };
        // Records of one batch nearly always share their schema: the memo
        // finds the plan again without building a key.
        let (id, indexes, payload, prefix) = match side {
            Side::Framed { .. } => match sluice_proto::decode_frame(data) {
                Ok(frame) => {
                    let prefix = &data[..data.len() - frame.payload.len()];
                    (
                        frame.schema_id,
                        frame.message_indexes,
                        frame.payload,
                        prefix,
                    )
                }
                Err(_) => return Rewritten::Null,
            },
            Side::Raw { .. } => (RAW_SIDE, MessageIndexes::from(&[][..]), data, &data[..0]),
        };
        let found = memo
            .iter()
            .find(|m| m.side == which && m.id == id && m.indexes == indexes)
            .map(|m| m.plan.clone());
        let plan = match found {
            Some(p) => p,
            None => {
                let key = match side {
                    Side::Framed { .. } => PlanKey::Framed(id, indexes.to_vec(), purpose.cloned()),
                    Side::Raw { message, .. } => {
                        PlanKey::Raw(message.full_name().to_owned(), purpose.cloned())
                    }
                };
                let p = self.plan(side, &key, purpose).await;
                memo.push(Memo {
                    side: which,
                    id,
                    indexes,
                    plan: p.clone(),
                });
                p
            }
        };
        let plan = match plan {
            Plan::Pass => return Rewritten::Same,
            Plan::Hide => return Rewritten::Null,
            Plan::Apply(plan) => plan,
        };
        out.clear();
        out.extend_from_slice(prefix);
        match plan.apply(payload, out) {
            Ok(()) => Rewritten::Into,
            Err(_) => Rewritten::Null,
        }
    }

    /// The prepared redaction for one schema and purpose.
    async fn plan(&self, side: &Side, key: &PlanKey, purpose: Option<&Purpose>) -> Plan {
        if let Some(p) = self.plans.get(key) {
            return p;
        }
        let message: Option<MessageDescriptor> = match (side, key) {
            (Side::Raw { message, .. }, _) => Some(message.clone()),
            (Side::Framed { .. }, PlanKey::Framed(id, indexes, _)) => {
                match self.validator.registry().schema_by_id(*id).await {
                    Ok(schema) => schema.message_by_indexes(indexes).ok(),
                    // Unreadable now, perhaps readable later: not cached.
                    Err(_) => return Plan::Hide,
                }
            }
            _ => None,
        };
        let plan = match message {
            Some(m) => match Redaction::prepare(&m, &|f| self.policies.hidden(purpose, f)) {
                Some(r) => Plan::Apply(Arc::new(r)),
                None => Plan::Pass,
            },
            // The record names a message its schema does not have.
            None => Plan::Hide,
        };
        self.plans.insert(key.clone(), plan.clone());
        plan
    }
}

/// Which side of a record a plan is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RecordSide {
    Key,
    Value,
}

/// The schema id standing for "the topic's raw message type" in the memo.
const RAW_SIDE: u32 = u32::MAX;

/// A plan found while rewriting one batch (for one purpose).
struct Memo {
    side: RecordSide,
    id: u32,
    indexes: MessageIndexes,
    plan: Plan,
}

/// What to do with one side of the records of one schema, for one reader.
#[derive(Clone)]
enum Plan {
    /// The reader may see every field.
    Pass,
    Apply(Arc<Redaction>),
    /// The record cannot be read with its schema: the reader gets null.
    Hide,
}

/// What a reader for `purpose` may not see of each topic table, for SQL.
/// The table's `value` and `key` columns follow the messages its archiver
/// chose (in the subjects' latest versions), so the same messages decide
/// here.
pub async fn sql_guards(
    policies: &Policies,
    validator: &Validator,
    meta: &crate::store::meta::MetaStore,
    lake: &sluice_lakehouse::Lakehouse,
    purpose: Option<&Purpose>,
) -> Result<Guards, String> {
    let mut guards = Guards::new();
    let topics = meta.list_topics().await.map_err(|e| e.to_string())?;
    for topic in topics {
        let (key, value) = validator
            .sides(&topic)
            .await
            .map_err(|r| rejection(r).message)?;
        let hidden_in = |m: &MessageDescriptor| {
            let mut out = Vec::new();
            hidden_paths(policies, purpose, m, &mut Vec::new(), &mut out);
            out
        };
        let mut guard = TableGuard::default();
        let (value_pinned, key_pinned) = if value.is_some() || key.is_some() {
            table_messages(lake, &topic.name).await?
        } else {
            (None, None)
        };
        if let Some(side) = &value {
            let versions = table_message_versions(validator, side, value_pinned.as_deref()).await?;
            guard.hidden = hidden_in_every_version(&versions, hidden_in);
        }
        if let Some(side) = &key {
            let versions = table_message_versions(validator, side, key_pinned.as_deref()).await?;
            guard.key_hidden = hidden_in_every_version(&versions, hidden_in);
        }
        if guard != TableGuard::default() {
            let table = lake.ident(&topic.name);
            guards.insert(table.name().to_owned(), guard);
        }
    }
    Ok(guards)
}

/// The messages whose fields a topic table's `value` and `key` columns
/// hold, as the archiver recorded them in the table (none for a table not
/// made yet, or a column it does not have).
async fn table_messages(
    lake: &sluice_lakehouse::Lakehouse,
    topic: &str,
) -> Result<(Option<String>, Option<String>), String> {
    use sluice_lakehouse::table::{KEY_MESSAGE_PROPERTY, VALUE_MESSAGE_PROPERTY};
    let table = lake
        .load(topic)
        .await
        .map_err(|e| format!("cannot read the table of topic '{topic}': {e}"))?;
    let Some(table) = table else {
        return Ok((None, None));
    };
    let props = table.table.metadata().properties();
    Ok((
        props.get(VALUE_MESSAGE_PROPERTY).cloned(),
        props.get(KEY_MESSAGE_PROPERTY).cloned(),
    ))
}

/// The message a side's table columns follow, in the subject's latest
/// version and then in every earlier one that declares it: for a framed
/// side, the message the table was made for (`pinned`), else the
/// subject's first (what tables made before the choice was recorded
/// hold). The table keeps the columns of every version, so each
/// version's policies count.
async fn table_message_versions(
    validator: &Validator,
    side: &Side,
    pinned: Option<&str>,
) -> Result<Vec<MessageDescriptor>, String> {
    let subject = side.subject();
    let latest = match side {
        Side::Raw { message, .. } => Some(message.clone()),
        Side::Framed { subject } => {
            let latest = validator
                .registry()
                .latest_for_subject(subject)
                .await
                .map_err(|e| format!("cannot read subject '{subject}': {e}"))?;
            let pinned = pinned.and_then(|name| latest.schema.pool().get_message_by_name(name));
            pinned.or_else(|| latest.schema.record_type())
        }
    };
    let Some(latest) = latest else {
        return Ok(Vec::new());
    };
    let history = validator
        .registry()
        .subject_history(subject)
        .await
        .map_err(|e| format!("cannot read the versions of subject '{subject}': {e}"))?;
    let mut out = vec![latest.clone()];
    for version in history.iter().rev() {
        if let Some(m) = version
            .schema
            .pool()
            .get_message_by_name(latest.full_name())
            && !out.contains(&m)
        {
            out.push(m);
        }
    }
    Ok(out)
}

/// The hidden paths of every version of a message, the latest's action
/// first where versions differ: a field hidden in any version stays
/// hidden, as its column holds that version's values.
fn hidden_in_every_version(
    versions: &[MessageDescriptor],
    hidden_in: impl Fn(&MessageDescriptor) -> Vec<(Vec<String>, Hidden)>,
) -> Vec<(Vec<String>, Hidden)> {
    let mut out: Vec<(Vec<String>, Hidden)> = Vec::new();
    for m in versions {
        for (path, how) in hidden_in(m) {
            if !out.iter().any(|(p, _)| *p == path) {
                out.push((path, how));
            }
        }
    }
    out
}

/// Collects the name paths of the fields under `message` that `purpose`
/// may not see. A list or map of messages with hidden fields inside is
/// hidden whole (SQL cannot rewrite its elements one by one).
fn hidden_paths(
    policies: &Policies,
    purpose: Option<&Purpose>,
    message: &MessageDescriptor,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Hidden)>,
) {
    // The table layout stops following messages at this depth too.
    if path.len() > 16 {
        return;
    }
    for field in message.fields() {
        path.push(field.name().to_owned());
        if let Some(how) = policies.hidden(purpose, &field) {
            let how = if field.is_list() || field.is_map() {
                Hidden::Drop
            } else {
                how
            };
            out.push((path.clone(), how));
        } else if let sluice_proto::prost_reflect::Kind::Message(sub) = field.kind() {
            if field.is_list() || field.is_map() {
                if Redaction::prepare(&sub, &|f| policies.hidden(purpose, f)).is_some() {
                    out.push((path.clone(), Hidden::Drop));
                }
            } else {
                hidden_paths(policies, purpose, &sub, path, out);
            }
        }
        path.pop();
    }
}

/// One side of a record as it goes out.
fn pick<'a>(w: Rewritten, original: Option<&'a [u8]>, rewritten: &'a [u8]) -> Option<&'a [u8]> {
    match w {
        Rewritten::Same => original,
        Rewritten::Into => Some(rewritten),
        Rewritten::Null => None,
    }
}

/// What became of one side of a record.
#[derive(Clone, Copy)]
enum Rewritten {
    Same,
    /// Rewritten into the side's scratch buffer.
    Into,
    Null,
}

fn rejection(r: crate::policy::validation::Rejection) -> KafkaError {
    use crate::policy::validation::Rejection;
    match r {
        Rejection::Unavailable(m) | Rejection::Batch(m) => unavailable(m),
        Rejection::Invalid(errors) => unavailable(
            errors
                .first()
                .map_or_else(String::new, |e| e.message.clone()),
        ),
    }
}

fn unavailable(e: impl std::fmt::Display) -> KafkaError {
    KafkaError::new(ResponseError::KafkaStorageError, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::ANONYMOUS;

    const FILE: &str = r#"
        purposes = ["billing", "marketing", "analytics"]
        action = "drop"
        [actions]
        marketing = "hash"
        [sensitivity]
        pii = ["billing"]
        [grants]
        "User:ANONYMOUS" = ["marketing", "analytics"]
        "User:billing-app" = ["billing"]
    "#;

    #[test]
    fn purposes_are_read_from_client_ids() {
        assert_eq!(
            declared_purpose("crm-sync,purpose=billing"),
            Ok(Some("billing"))
        );
        assert_eq!(declared_purpose("purpose=billing"), Ok(Some("billing")));
        assert_eq!(declared_purpose("rdkafka"), Ok(None));
        assert_eq!(declared_purpose(""), Ok(None));
        assert_eq!(declared_purpose("a, purpose = x ,b=c"), Ok(Some("x")));
        assert!(declared_purpose("purpose=").is_err());
        assert!(declared_purpose("purpose=a,purpose=b").is_err());
    }

    #[test]
    fn grants_decide_who_may_declare_what() {
        let p = Policies::parse(FILE).unwrap();
        assert_eq!(
            p.declared(ANONYMOUS, "x,purpose=marketing"),
            Ok(Some(Purpose("marketing".into())))
        );
        let refused = p.declared(ANONYMOUS, "x,purpose=billing").unwrap_err();
        assert!(refused.contains("not granted"), "{refused}");
        let unknown = p.declared(ANONYMOUS, "purpose=sales").unwrap_err();
        assert!(
            unknown.contains("unknown") && unknown.contains("billing"),
            "{unknown}"
        );
        assert!(p.declared("User:billing-app", "purpose=billing").is_ok());
        assert!(p.declared("User:nobody", "purpose=analytics").is_err());
        assert_eq!(p.declared("User:nobody", "plain"), Ok(None));
        // Without a policy file nothing can be declared.
        assert!(
            Policies::default()
                .declared(ANONYMOUS, "purpose=billing")
                .is_err()
        );
        // Without grants every principal may declare every purpose.
        let open = Policies::parse("purposes = [\"billing\"]").unwrap();
        assert!(open.declared("User:anyone", "purpose=billing").is_ok());
    }

    #[test]
    fn bad_policy_files_are_refused_with_the_reason() {
        for (text, why) in [
            ("purposes = [\"a\"]\n[grants]\nx = [\"b\"]", "purpose 'b'"),
            ("purposes = [\"a\"]\naction = \"blur\"", "blur"),
            ("purposes = [\"a b\"]", "a b"),
            ("purpose = [\"a\"]", "unknown field"),
            (
                "purposes = [\"a\"]\n[sensitivity]\npii = [\"c\"]",
                "purpose 'c'",
            ),
        ] {
            let e = format!("{:#}", Policies::parse(text).unwrap_err());
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn visibility_combines_purposes_and_sensitivity() {
        let schema = CompiledSchema::compile(
            r#"syntax = "proto3";
            import "sluice/policy/v1/policy.proto";
            message Customer {
              string id = 1;
              string email = 2 [(sluice.policy.v1.field) = { purposes: ["billing"] }];
              string name = 3 [(sluice.policy.v1.field) = { sensitivity: "pii" }];
              string note = 4 [(sluice.policy.v1.field) = { sensitivity: "secret" }];
              string city = 5 [(sluice.policy.v1.field) = { sensitivity: "public" }];
            }"#,
            &BTreeMap::new(),
        )
        .unwrap();
        let m = schema.record_type().unwrap();
        let p = Policies::parse(FILE).unwrap();
        let hidden = |purpose: Option<&str>, field: &str| {
            let purpose = purpose.map(|x| Purpose(x.into()));
            p.hidden(purpose.as_ref(), &m.get_field_by_name(field).unwrap())
        };
        for f in ["id", "city"] {
            for who in [None, Some("billing"), Some("marketing")] {
                assert_eq!(hidden(who, f), None, "{f} for {who:?}");
            }
        }
        assert_eq!(hidden(Some("billing"), "email"), None);
        assert_eq!(hidden(Some("billing"), "name"), None);
        assert_eq!(hidden(Some("marketing"), "email"), Some(Hidden::Hash));
        assert_eq!(hidden(Some("analytics"), "name"), Some(Hidden::Drop));
        assert_eq!(hidden(None, "email"), Some(Hidden::Drop));
        // A class the file does not mention is granted to nobody.
        assert_eq!(hidden(Some("billing"), "note"), Some(Hidden::Drop));
    }
}
