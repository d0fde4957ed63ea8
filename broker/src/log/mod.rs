//! The partition log: how produced batches are checked, stored, read back
//! and deleted, between the Kafka handlers above and the stores below.
//!
//! - [`batch`]: record batch (v2) headers: split, check, patch offsets in.
//! - [`append`]: group commit of all connections' batches (`Appender`).
//! - [`read`]: stored batches back, ready to send (`append_batch`).
//! - [`dead_letter`]: the records a `dlq`-mode topic takes out of a batch.
//! - [`retention`]: deletion by `retention.ms` / `retention.bytes`, and
//!   garbage collection of segments nothing refers to.
//!
//! May use: `store` (metadata store, segments), `cluster` (retention runs on
//! the holder of the upkeep lease) and `common` (`KafkaError`).
//!
//! Contract: a batch is kept as the exact bytes the producer sent (only the
//! base offset and leader epoch are written in when served), and it becomes
//! visible to fetch, ListOffsets and the high watermark exactly when its
//! metadata transaction commits. The read path asks only for what
//! [`read::Stores`] gives; retention takes the stores it works on.
//!
//! # Produce path
//!
//! ```text
//!  kafka/connection.rs   read_requests: read_frame → codec::decode_frame
//!        │               → handlers::start, still in the reader: decode
//!        │               the ProduceRequest → produce::start
//!        ▼
//!  handlers/produce.rs   start: chain onto ConnContext::produce_chain (so
//!        │               batches queue in request order); then run:
//!        │  writable_topic    topic name, ACL (WRITE on the topic), lookup
//!        │  check_partition   batch::split_and_check (CRC, max.message.bytes)
//!        │                    validate: Validator::check_batch (schema);
//!        │                    dlq mode: batch::remove_records + DeadLetters
//!        │  wait until the connection's previous produce has queued
//!        │  Appender::submit(batches) → AppendTicket
//!        ▼
//!  log/append.rs         the flusher takes every queued job at once
//!        │               Preparer::prepare: idempotence checks, batches laid
//!        │               end to end, Segments::put (segment object first)
//!        │               Committer::commit → index_flush: one metadata
//!        │               transaction assigns offsets (+ dead letters), commit
//!        │               commits.send_modify   ◄── long-poll watch bumped here
//!        │               reply to every job: BatchOutcome per batch
//!        ▼
//!  handlers/produce.rs   AppendTicket::wait → Quotas::record (throttle time)
//!        │               acks=0: no response; else answer → respond
//!        ▼
//!  kafka/connection.rs   write_responses, in request order
//! ```
//!
//! # Fetch path
//!
//! ```text
//!  kafka/connection.rs   handlers::start → fetch::start: decode FetchRequest,
//!        │               Quotas::max_fetch_bytes caps max_bytes
//!        ▼
//!  handlers/fetch.rs     handle: the client's purpose (ConnContext::purpose)
//!        │               ACL (READ on each topic), once per request
//!        │  loop until min_bytes, an error, or max_wait_ms:
//!        │    commits.borrow_and_update     (the watch the flusher bumps)
//!        │    read_all → read_partition:
//!        │      MetaStore::partition_offsets   high watermark, log start
//!        │      MetaStore::batches_from        offset index → BatchLoc
//!        ▼
//!  log/read.rs           append_batch(broker as Stores, loc):
//!        │                 segment: Segments::get (cache, else object store)
//!        │                 LAKE_SEGMENT: append_archived rebuilds the batch
//!        │                   from the topic table (LakeReader)
//!        │                 batch::patch_into: base offset, leader epoch
//!        ▼
//!  handlers/fetch.rs     read_partition: Redactor::redact (fields by
//!        │               purpose) → PartitionData
//!        │               not enough yet: wait for commits.changed(), read
//!        │               again (other brokers' appends: every 100 ms)
//!        │               audit; apply_quota (over it: no records, throttle)
//!        ▼
//!  kafka/connection.rs   respond → write_responses, in request order
//! ```

pub mod append;
pub mod batch;
pub mod dead_letter;
pub mod read;
pub mod retention;

/// Leader epoch stamped on every stored batch and reported for every
/// partition. Sluice has no replicas to elect, so the epoch never changes.
pub const LEADER_EPOCH: i32 = 0;
