//! The archiver: turns each topic's committed batches into Parquet files
//! committed to the topic's Iceberg table, every commit interval.
//!
//! Per topic and round: resolve the value schema (subject `T-value`, or the
//! raw message type of `sluice.value.message.type`) and the key schema
//! (`T-key`, `sluice.key.message.type`), create or evolve the
//! table, read the batches after the archived position of every partition,
//! and commit them as one fast append. The table commit and the new
//! archived positions (plus the offset → file index) are written in one
//! metadata-store transaction, so after a crash the next round starts
//! exactly where the last commit ended: no offset is skipped or archived
//! twice.
//!
//! With many brokers, each topic is archived by the holder of its archiver
//! lease; when that broker dies, the lease and the work move to another,
//! which resumes from the committed positions. Should two brokers ever
//! archive one topic at once, the table commit (a compare-and-swap of the
//! table's metadata location, with the positions in the same transaction)
//! lets only one of them succeed for the same offsets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_lakehouse::table::Partitioning;
use sluice_lakehouse::{FramedAs, Framing, KafkaRow, Lakehouse, MessageFormat, TopicTable};
use sluice_schema_registry::RegistryError;
use tokio_util::sync::CancellationToken;

use crate::log::batch;
use crate::node::state::SharedBroker;
use crate::store::meta::TopicRecord;
use crate::store::topic_config::{KEY_MESSAGE_TYPE, TABLE_PARTITIONING, VALUE_MESSAGE_TYPE};

/// Most batches read per partition in one round; the rest waits for the
/// next round (which starts at once when a round was full).
const BATCHES_PER_ROUND: i64 = 2_000;
/// Snapshots older than this are expired (time travel reaches back this
/// far), keeping at least [`KEEP_SNAPSHOTS`], once [`EXPIRE_BATCH`] of them
/// have aged out.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(15 * 60);
const KEEP_SNAPSHOTS: usize = 100;
const EXPIRE_BATCH: usize = 100;
/// How often each table is compacted (and emptied files are removed).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);
/// Most batch bytes one round reads for one topic (bounds the archiver's
/// memory and the size of one commit's files).
const BYTES_PER_ROUND: usize = 64 * 1024 * 1024;
/// Longest wait before retrying a topic whose archiving keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub async fn run(
    broker: SharedBroker,
    lake: Arc<Lakehouse>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tables: HashMap<String, TopicTable> = HashMap::new();
    // Topics whose last round failed, and when to try them again.
    let mut failing: HashMap<String, (Instant, Duration)> = HashMap::new();
    // When each topic's table was last compacted.
    let mut maintained: HashMap<String, Instant> = HashMap::new();
    if let Err(e) = mark_archived_at_startup(&broker, &lake).await {
        tracing::warn!(error = %e, "cannot bring archived batch marks up to date");
    }
    loop {
        let started = Instant::now();
        let mut more = false;
        match broker.meta.list_topics().await {
            Ok(topics) => {
                tables.retain(|name, _| topics.iter().any(|t| &t.name == name));
                let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
                if broker
                    .cluster
                    .should_run(crate::cluster::UPKEEP_LEASE, "tables")
                    .await
                    && let Err(e) = lake.drop_orphans(&names).await
                {
                    tracing::warn!(error = %e, "cannot drop the tables of deleted topics");
                }
                for topic in topics {
                    if stop.is_cancelled() {
                        return;
                    }
                    // One broker at a time archives a topic. A table cached
                    // from an earlier lease may be stale: forget it.
                    if !broker
                        .cluster
                        .should_run(crate::cluster::ARCHIVER_LEASE, &topic.name)
                        .await
                    {
                        tables.remove(&topic.name);
                        continue;
                    }
                    if let Some((retry_at, _)) = failing.get(&topic.name)
                        && Instant::now() < *retry_at
                    {
                        continue;
                    }
                    match archive_topic(&broker, &lake, &topic, &mut tables).await {
                        Ok(full) => {
                            more |= full;
                            failing.remove(&topic.name);
                            let due = maintained
                                .get(&topic.name)
                                .is_none_or(|t| t.elapsed() >= MAINTENANCE_INTERVAL);
                            if due && !full {
                                maintained.insert(topic.name.clone(), Instant::now());
                                match crate::lake::maintenance::compact(&broker, &lake, &topic)
                                    .await
                                {
                                    // The cached table is stale now.
                                    Ok(_) => {
                                        tables.remove(&topic.name);
                                    }
                                    Err(e) => {
                                        tracing::warn!(topic = %topic.name, error = %e, "table compaction failed")
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            metrics::counter!("sluice_archiver_errors_total").increment(1);
                            let backoff = failing
                                .get(&topic.name)
                                .map(|(_, b)| (*b * 2).min(MAX_BACKOFF))
                                .unwrap_or(interval.max(Duration::from_millis(500)));
                            tracing::warn!(
                                topic = %topic.name,
                                error = %e,
                                retry_in = ?backoff,
                                "archiving failed; the topic's records stay in its segments until it succeeds"
                            );
                            failing.insert(topic.name.clone(), (Instant::now() + backoff, backoff));
                            tables.remove(&topic.name);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "archiver cannot list topics"),
        }
        metrics::histogram!("sluice_archiver_round_seconds")
            .record(started.elapsed().as_secs_f64());
        let wait = if more {
            Duration::ZERO
        } else {
            interval.saturating_sub(started.elapsed())
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Marks batches archived by a commit whose marking did not happen (the
/// broker stopped between the two).
async fn mark_archived_at_startup(broker: &SharedBroker, lake: &Lakehouse) -> anyhow::Result<()> {
    for topic in broker.meta.list_topics().await? {
        let ident = lake.ident(&topic.name);
        // Only a table of this very topic (not of a deleted namesake).
        if lake.table_topic_id(&topic.name).await? != Some(topic.uuid.to_string()) {
            continue;
        }
        for (partition, next) in lake.catalog().progress(&ident).await? {
            broker.meta.mark_archived(topic.id, partition, next).await?;
        }
    }
    Ok(())
}

/// The part of a record a decoded column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Value,
    Key,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Value => "value",
            Part::Key => "key",
        }
    }

    /// The subject whose schema the part follows.
    fn subject(self, topic: &str) -> String {
        format!("{topic}-{}", self.name())
    }

    /// The topic config naming the raw (unframed) message type.
    fn raw_type_config(self) -> &'static str {
        match self {
            Part::Value => VALUE_MESSAGE_TYPE,
            Part::Key => KEY_MESSAGE_TYPE,
        }
    }

    /// The table property naming the message the column holds.
    fn message_property(self) -> &'static str {
        match self {
            Part::Value => sluice_lakehouse::table::VALUE_MESSAGE_PROPERTY,
            Part::Key => sluice_lakehouse::table::KEY_MESSAGE_PROPERTY,
        }
    }

    fn of<'a>(self, row: &KafkaRow<'a>) -> Option<&'a [u8]> {
        match self {
            Part::Value => row.value,
            Part::Key => row.key,
        }
    }
}

/// What a topic's `value` (or `key`) column holds.
enum DecodedColumn {
    /// No schema: the bytes are kept only as they are.
    Bytes,
    /// The schema declares several messages and there is no record yet to
    /// say which one the topic carries: the table waits for the first.
    Undecided,
    /// Values of this message, with a name for the layout that changes
    /// whenever the table's columns must be derived again.
    Message(MessageFormat, String),
}

/// Which message a topic's table holds in its `value` (or `key`) column.
///
/// - `sluice.value.message.type` (raw Protobuf) names it;
/// - otherwise the message the table already holds (`pinned`), as long as
///   the subject's latest schema still declares it;
/// - otherwise the only top-level message of the schema;
/// - otherwise the message that the first record's framing names
///   (`framings`, in record order; `records` says whether there are any).
///
/// Once chosen it stays: records framed as another message of the schema
/// are kept as bytes with a null column, and reported.
async fn decoded_column(
    broker: &SharedBroker,
    topic: &TopicRecord,
    part: Part,
    pinned: Option<&str>,
    framings: &[FramedAs],
    records: bool,
) -> anyhow::Result<DecodedColumn> {
    let subject = part.subject(&topic.name);
    let latest = match broker
        .validator
        .registry()
        .latest_for_subject(&subject)
        .await
    {
        Ok(s) => s,
        Err(RegistryError::SubjectNotFound(_)) => return Ok(DecodedColumn::Bytes),
        Err(e) => anyhow::bail!("cannot read subject {subject}: {e}"),
    };
    let pool = latest.schema.pool();
    let raw_type = topic.config.get(part.raw_type_config());
    let (message, framing) = if raw_type.is_empty() {
        let declared = |name: &str| pool.get_message_by_name(name);
        let top_level: Vec<_> = latest.schema.file().messages().collect();
        let chosen = pinned
            .and_then(declared)
            .or_else(|| (top_level.len() == 1).then(|| top_level[0].clone()))
            .or_else(|| {
                framings
                    .iter()
                    .find_map(|f| declared(f.message.full_name()))
            });
        let message = match (chosen, top_level.first()) {
            (Some(message), _) => message,
            (None, None) => anyhow::bail!("subject {subject} declares no message"),
            (None, Some(_)) if !records => return Ok(DecodedColumn::Undecided),
            (None, Some(first)) => {
                // None of the records names a message of the latest schema
                // (all are reported as undecodable): the table cannot wait
                // for ever, or retention could not free their segments.
                tracing::warn!(
                    topic = %topic.name,
                    message = first.full_name(),
                    "no archived record names a message of the latest {} schema; the table takes its first message",
                    part.name()
                );
                first.clone()
            }
        };
        (message, Framing::Confluent(Arc::new(framings.to_vec())))
    } else {
        let message = pool
            .get_message_by_name(raw_type)
            .ok_or_else(|| anyhow::anyhow!("subject {subject} has no message {raw_type}"))?;
        (message, Framing::Raw)
    };
    let source = format!("{subject}:{}:{}", latest.id, message.full_name());
    // The message in every version that declares it: the table takes each
    // in, so that records archived after a later version became the latest
    // still find columns for their fields.
    let history = broker
        .validator
        .registry()
        .subject_history(&subject)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the versions of subject {subject}: {e}"))?
        .into_iter()
        .filter_map(|v| {
            let m = v.schema.pool().get_message_by_name(message.full_name())?;
            Some((v.version, m))
        })
        .collect();
    let format = MessageFormat {
        message,
        framing,
        schema_version: latest.version,
        history: Arc::new(history),
    };
    Ok(DecodedColumn::Message(format, source))
}

/// The formats of a topic's `value` and `key` columns for this round and
/// the name of the layout they make; `None` while the table waits for a
/// record to say which message a schema's column holds. `current` are
/// the properties of the topic's table, if it has one.
async fn formats(
    broker: &SharedBroker,
    topic: &TopicRecord,
    current: Option<&HashMap<String, String>>,
    rows: &[KafkaRow<'_>],
) -> anyhow::Result<Option<(Option<MessageFormat>, Option<MessageFormat>, String)>> {
    let mut out = Vec::with_capacity(2);
    for part in [Part::Value, Part::Key] {
        let pinned = current.and_then(|props| props.get(part.message_property()).cloned());
        let framings = framings(broker, rows.iter().filter_map(|r| part.of(r))).await;
        let column = decoded_column(
            broker,
            topic,
            part,
            pinned.as_deref(),
            &framings,
            !rows.is_empty(),
        );
        out.push(match column.await? {
            DecodedColumn::Bytes => (None, None),
            DecodedColumn::Undecided => return Ok(None),
            DecodedColumn::Message(format, source) => (Some(format), Some(source)),
        });
    }
    let [(value, value_source), (key, key_source)] = <[_; 2]>::try_from(out)
        .map_err(|_| anyhow::anyhow!("expected the value and the key column"))?;
    // Tables of topics without a key schema keep the name they had before
    // keys were decoded.
    let source = match (value_source, key_source) {
        (v, None) => v.unwrap_or_else(|| "none".to_string()),
        (v, Some(k)) => format!("{};{k}", v.as_deref().unwrap_or("none")),
    };
    Ok(Some((value, key, source)))
}

/// The message each framing among `framed` (values or keys) names, in
/// order of first use (framings whose schema cannot be read or has no such
/// message are left out: their records are reported as undecodable).
async fn framings<'a>(
    broker: &SharedBroker,
    framed: impl Iterator<Item = &'a [u8]>,
) -> Vec<FramedAs> {
    let mut seen: Vec<(u32, Vec<i32>)> = Vec::new();
    let mut out = Vec::new();
    for value in framed {
        let Ok(frame) = sluice_proto::decode_frame(value) else {
            continue;
        };
        if seen
            .iter()
            .any(|(id, idx)| *id == frame.schema_id && frame.message_indexes == *idx)
        {
            continue;
        }
        let indexes = frame.message_indexes.to_vec();
        seen.push((frame.schema_id, indexes.clone()));
        let schema = match broker
            .validator
            .registry()
            .schema_by_id(frame.schema_id)
            .await
        {
            Ok(schema) => schema,
            Err(e) => {
                tracing::warn!(schema_id = frame.schema_id, error = %e, "cannot read a schema that archived records name");
                continue;
            }
        };
        if let Ok(message) = schema.message_by_indexes(&indexes) {
            out.push(FramedAs {
                schema_id: frame.schema_id,
                message_indexes: indexes,
                message,
            });
        }
    }
    out
}

/// One batch read back for archiving.
struct Stored {
    partition: i32,
    /// The partition's first offset to archive (earlier records are skipped).
    from: i64,
    base_offset: i64,
    header: batch::BatchHeader,
    records: Bytes,
}

/// What one round archives of a topic: the stored batches past each
/// partition's table progress (at most [`BATCHES_PER_ROUND`] per partition
/// and [`BYTES_PER_ROUND`] in all).
#[derive(Default)]
struct Round {
    stored: Vec<Stored>,
    /// Each partition's next offset once this round is committed.
    next_offsets: Vec<(i32, i64)>,
    /// Whether some partition had more than the round could take.
    full: bool,
    /// Offsets stored but not yet in the table, as the round began.
    lag: i64,
    /// Batches the table does not take (transaction markers, batches of
    /// aborted transactions), kept beside it as they were stored.
    kept: Vec<Kept>,
}

/// A batch whose bytes stay beside the table.
struct Kept {
    partition: i32,
    base_offset: i64,
    bytes: Bytes,
}

/// Reads this round's batches of `topic`, from where `progress` (each
/// partition's next offset in the table) says the table stops.
async fn read_round(
    broker: &SharedBroker,
    topic: &TopicRecord,
    progress: &HashMap<i32, i64>,
) -> anyhow::Result<Round> {
    let mut round = Round::default();
    let mut loaded = 0usize;
    for partition in 0..topic.partitions {
        let Some(offsets) = broker.meta.partition_offsets(topic.id, partition).await? else {
            continue;
        };
        let from = progress
            .get(&partition)
            .copied()
            .unwrap_or(0)
            .max(offsets.log_start);
        // Never past the last stable offset: records of open transactions
        // reach the table only once committed.
        let end = offsets.last_stable;
        if from >= end {
            round.lag += offsets.next_offset - from.min(offsets.next_offset);
            continue;
        }
        round.lag += offsets.next_offset - from;
        let aborted = broker
            .meta
            .aborted_txns(topic.id, partition, from, end)
            .await?;
        let locs = broker
            .meta
            .batches_from(topic.id, partition, from, BATCHES_PER_ROUND)
            .await?;
        round.full |= locs.len() as i64 == BATCHES_PER_ROUND;
        let mut next = from;
        for loc in locs.iter().filter(|l| l.last_offset >= from) {
            if loc.base_offset >= end {
                break;
            }
            if loaded >= BYTES_PER_ROUND {
                // The rest waits for the next round, which starts at once.
                round.full = true;
                break;
            }
            loaded += loc.len as usize;
            let mut buf = Vec::with_capacity(loc.len as usize);
            crate::log::read::append_batch(&**broker, loc, &mut buf)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let bytes = Bytes::from(buf);
            let header = batch::parse_stored_header(&bytes)?;
            next = loc.last_offset + 1;
            let aborted_batch = header.is_transactional()
                && aborted.iter().any(|a| {
                    a.producer_id == header.producer_id
                        && a.first_offset <= loc.base_offset
                        && loc.base_offset < a.last_offset
                });
            if header.is_control() || aborted_batch {
                // Not the empty batches a dead-letter topic leaves, which
                // are served as control batches too (and rebuilt as such).
                let emptied = loc.len as usize == batch::HEADER_LEN;
                if header.is_transactional() && !emptied {
                    round.kept.push(Kept {
                        partition,
                        base_offset: loc.base_offset,
                        bytes,
                    });
                }
                continue;
            }
            let records = batch::records_section(&bytes, &header)?;
            round.stored.push(Stored {
                partition,
                from,
                base_offset: loc.base_offset,
                header,
                records,
            });
        }
        if next > from {
            round.next_offsets.push((partition, next));
        }
    }
    Ok(round)
}

/// The table rows of this round's batches: one per record at or past its
/// partition's progress, control batches left out.
fn rows_of(stored: &[Stored]) -> anyhow::Result<Vec<KafkaRow<'_>>> {
    let mut rows: Vec<KafkaRow<'_>> = Vec::new();
    for s in stored {
        // Log-append-time batches carry the broker's time for every record.
        let log_append_time = s.header.attributes & 0x08 != 0;
        for record in batch::Records::new(&s.records, s.header.record_count) {
            let record = record?;
            let offset = s.base_offset + record.offset_delta;
            if offset < s.from {
                continue;
            }
            let timestamp_ms = if log_append_time {
                s.header.max_timestamp
            } else {
                s.header.base_timestamp + record.timestamp_delta
            };
            rows.push(KafkaRow {
                partition: s.partition,
                offset,
                timestamp_ms,
                key: record.key,
                value: record.value,
                headers: record.headers()?,
            });
        }
    }
    Ok(rows)
}

/// Expires the table's snapshots older than [`SNAPSHOT_MAX_AGE`] (keeping
/// [`KEEP_SNAPSHOTS`]), once [`EXPIRE_BATCH`] of them have aged out; a
/// failed expiry is logged and tried again after a later commit.
async fn expire_if_due(lake: &Lakehouse, topic: &TopicRecord, table: TopicTable) -> TopicTable {
    let cutoff = crate::store::meta::unix_ms() - SNAPSHOT_MAX_AGE.as_millis() as i64;
    let total = table.table.metadata().snapshots().len();
    let aged = table
        .table
        .metadata()
        .snapshots()
        .filter(|s| s.timestamp_ms() < cutoff)
        .count();
    // In batches: one expiry commit per EXPIRE_BATCH aged snapshots.
    if total > KEEP_SNAPSHOTS && aged >= EXPIRE_BATCH {
        match lake.expire_snapshots(&table, cutoff, KEEP_SNAPSHOTS).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(topic = %topic.name, error = %e, "snapshot expiry failed");
                table
            }
        }
    } else {
        table
    }
}

/// The table to append this round to, laid out for the value and key
/// columns' messages (`source`) and the topic's partitioning: the cached
/// one if its layout is that, else the table evolved (or made) to it.
async fn table_for(
    lake: &Lakehouse,
    topic: &TopicRecord,
    cached: Option<&TopicTable>,
    (value_format, key_format): (Option<MessageFormat>, Option<MessageFormat>),
    source: &str,
    partitioning: Partitioning,
) -> anyhow::Result<TopicTable> {
    let layout_source = format!("{source}|{}", partitioning.name());
    let cached = cached.filter(|t| {
        t.table
            .metadata()
            .properties()
            .get(sluice_lakehouse::table::SOURCE_SCHEMA_PROPERTY)
            == Some(&layout_source)
    });
    let table = match cached {
        Some(t) => t.table.clone(),
        None => {
            lake.prepare(
                &topic.name,
                &topic.uuid.to_string(),
                value_format.clone(),
                key_format.clone(),
                source,
                partitioning,
            )
            .await?
            .table
        }
    };
    // This round's framings go with the rows they name.
    Ok(TopicTable {
        table,
        value_format,
        key_format,
    })
}

/// Counts and logs (once per commit) the records whose value or key could
/// not be decoded into its column.
fn report_undecoded(topic: &TopicRecord, skipped: &sluice_lakehouse::Skipped) {
    for (part, undecoded) in [(Part::Value, &skipped.values), (Part::Key, &skipped.keys)] {
        let Some((partition, offset, reason)) = &undecoded.first else {
            continue;
        };
        metrics::counter!(
            "sluice_archiver_undecoded_records_total",
            "topic" => topic.name.clone(),
            "part" => part.name()
        )
        .increment(undecoded.count as u64);
        tracing::warn!(
            topic = %topic.name,
            records = undecoded.count,
            partition,
            offset,
            %reason,
            "records archived with a null {0} column (their bytes are in kafka_{0})",
            part.name()
        );
    }
}

/// Writes the batches the table does not hold into a segment of their own
/// and points their index entries at it, so fetches still serve them byte
/// for byte (markers for read_committed consumers, aborted records for
/// read_uncommitted ones) after the rest of their segment is archived.
async fn keep_beside_table(
    broker: &SharedBroker,
    topic: &TopicRecord,
    kept: Vec<Kept>,
) -> anyhow::Result<()> {
    if kept.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::new();
    let mut entries = Vec::with_capacity(kept.len());
    for k in &kept {
        entries.push(crate::store::meta::KeptBatch {
            partition: k.partition,
            base_offset: k.base_offset,
            pos: bytes.len() as i64,
            len: k.bytes.len() as i64,
        });
        bytes.extend_from_slice(&k.bytes);
    }
    let loc = broker.segments.put(Bytes::from(bytes)).await?;
    broker
        .meta
        .keep_beside_table(topic.id, &loc, &entries)
        .await?;
    Ok(())
}

/// Archives what is new in one topic. Returns whether a partition had more
/// than one round's worth of batches.
async fn archive_topic(
    broker: &SharedBroker,
    lake: &Lakehouse,
    topic: &TopicRecord,
    tables: &mut HashMap<String, TopicTable>,
) -> anyhow::Result<bool> {
    let partitioning = Partitioning::parse(topic.config.get(TABLE_PARTITIONING))
        .map_err(|e| anyhow::anyhow!(e))?;
    // The topic's table as it stands (a table left by a deleted topic of
    // the same name does not count: it is replaced, and archiving starts
    // from the beginning).
    let current = match tables.get(&topic.name) {
        Some(t) => Some(t.table.clone()),
        None => lake.load(&topic.name).await?.map(|t| t.table),
    }
    .filter(|t| {
        t.metadata()
            .properties()
            .get(sluice_lakehouse::table::TOPIC_ID_PROPERTY)
            == Some(&topic.uuid.to_string())
    });
    let ident = lake.ident(&topic.name);
    let progress = match &current {
        Some(_) => lake.catalog().progress(&ident).await?,
        None => HashMap::new(),
    };

    let Round {
        stored,
        next_offsets,
        full,
        lag,
        kept,
    } = read_round(broker, topic, &progress).await?;
    // Offsets stored but not yet in the table, as this round began.
    metrics::gauge!("sluice_archiver_lag_records", "topic" => topic.name.clone()).set(lag as f64);

    let rows = rows_of(&stored)?;
    let Some((value_format, key_format, source)) = formats(
        broker,
        topic,
        current.as_ref().map(|t| t.metadata().properties()),
        &rows,
    )
    .await?
    else {
        return Ok(false);
    };
    let table = table_for(
        lake,
        topic,
        tables.get(&topic.name),
        (value_format, key_format),
        &source,
        partitioning,
    )
    .await?;
    if next_offsets.is_empty() {
        tables.insert(topic.name.clone(), table);
        return Ok(false);
    }
    let count = rows.len();
    let started = Instant::now();
    // Before the table commit: once it lands, the batches' segments may go.
    keep_beside_table(broker, topic, kept).await?;
    let (table, skipped) = lake.append(&table, &rows, next_offsets.clone()).await?;
    report_undecoded(topic, &skipped);
    // The table now holds these offsets: fetches read them from there, and
    // their segments can go. (Repeated at startup in case of a crash here.)
    for (partition, next) in next_offsets {
        broker.meta.mark_archived(topic.id, partition, next).await?;
    }
    metrics::counter!("sluice_archived_records_total").increment(count as u64);
    // Freshness: how long the oldest record of the commit (by its
    // timestamp) waited to become queryable.
    if let Some(oldest) = rows.iter().map(|r| r.timestamp_ms).min() {
        let waited = (crate::store::meta::unix_ms() - oldest).max(0);
        metrics::histogram!("sluice_archiver_freshness_seconds").record(waited as f64 / 1000.0);
    }
    let table = expire_if_due(lake, topic, table).await;
    metrics::histogram!("sluice_archiver_commit_seconds").record(started.elapsed().as_secs_f64());
    tracing::debug!(topic = %topic.name, records = count, "archived");
    tables.insert(topic.name.clone(), table);
    Ok(full)
}
