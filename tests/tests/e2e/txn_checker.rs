//! A Jepsen-style checker for transactions. Transactional producers
//! (librdkafka) run transactions of random records on random partitions,
//! committing most and aborting some, while read_committed consumers follow
//! the topic and one broker is killed with SIGKILL and restarted. Each
//! transaction's outcome, as its client saw it, goes into a history; at the
//! end the log as fresh read_committed and read_uncommitted consumers read
//! it, what the following consumers saw and the topic's table are checked
//! against that history.
//!
//! Outcomes follow librdkafka's rules: a commit that returned Ok is
//! Committed; an abort that returned Ok is Aborted; a commit that failed
//! with an abortable error and was then aborted is Aborted; a commit that
//! failed fatally (the producer is re-created under the same transactional
//! id) is Unknown, and must be all or nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_tests::{Broker, DeliveryLog, Rng, consumer_from, now_ms, producer_from, unique};

use crate::cluster::SharedStores;
use crate::lakehouse::{sluice_cli, wait_for_table_rows};

const PARTITIONS: i32 = 4;
const PRODUCERS: usize = 3;
const FOLLOWERS: usize = 2;
/// Share of transactions the producers abort on purpose, in percent.
const ABORT_PERCENT: u64 = 30;
/// Timeout of one librdkafka transactional call (init, commit, abort, flush).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one transactional step may keep retrying retriable errors.
const RETRY_FOR: Duration = Duration::from_secs(40);
/// At most this many error messages are kept per producer or consumer.
const KEEP_ERRORS: usize = 10;

/// How long the producers run: 15 s, or `SLUICE_SOAK_SECS` when set.
fn run_time() -> Duration {
    let secs = std::env::var("SLUICE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    Duration::from_secs(secs)
}

/// Identity of one produced record, carried in its value as
/// `p{producer}-t{txn}-s{seq}`; `seq` grows over all of a producer's
/// transactions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct RecId {
    producer: usize,
    txn: u64,
    seq: u64,
}

impl RecId {
    fn value(&self) -> String {
        format!("p{}-t{}-s{}", self.producer, self.txn, self.seq)
    }

    fn parse(value: &str) -> Option<RecId> {
        let mut parts = value.split('-');
        let producer = parts.next()?.strip_prefix('p')?.parse().ok()?;
        let txn = parts.next()?.strip_prefix('t')?.parse().ok()?;
        let seq = parts.next()?.strip_prefix('s')?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(RecId { producer, txn, seq })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Committed,
    Aborted,
    Unknown,
}

/// One transaction of the history: the records handed to librdkafka (each
/// with its partition) and the outcome the client saw.
#[derive(Debug)]
struct Txn {
    producer: usize,
    number: u64,
    records: Vec<(i32, RecId)>,
    outcome: Outcome,
}

/// What one producer thread went through, besides its transactions.
#[derive(Default, Debug)]
struct ProducerStats {
    /// Producers re-created after a fatal error or a stuck call.
    recreated: usize,
    /// Transactional calls repeated after a retriable error.
    retries: usize,
    /// Transactions aborted because a send, flush or delivery failed.
    failed_sends: usize,
    errors: Vec<String>,
}

impl ProducerStats {
    fn note(&mut self, what: &str, e: &KafkaError) {
        if self.errors.len() < KEEP_ERRORS {
            self.errors.push(format!("{what}: {e}"));
        }
    }
}

/// How librdkafka classifies an error of a transactional call.
#[derive(Debug, PartialEq, Eq)]
enum ErrorKind {
    Retriable,
    Abortable,
    Fatal,
}

fn kind(e: &KafkaError) -> ErrorKind {
    match e {
        KafkaError::Transaction(e) if e.is_fatal() => ErrorKind::Fatal,
        KafkaError::Transaction(e) if e.txn_requires_abort() => ErrorKind::Abortable,
        KafkaError::Transaction(e) if e.is_retriable() => ErrorKind::Retriable,
        // Anything else (fencing among them, which librdkafka flags fatal)
        // leaves the producer in a state this checker does not reason
        // about: start over with a new instance.
        _ => ErrorKind::Fatal,
    }
}

/// One transactional producer thread: its librdkafka producer (re-created
/// under the same transactional id when it fails fatally) and its history.
struct Worker<'a> {
    index: usize,
    cfg: &'a ClientConfig,
    topic: &'a str,
    tid: String,
    producer: Option<ThreadedProducer<DeliveryLog>>,
    stats: ProducerStats,
}

impl<'a> Worker<'a> {
    fn new(index: usize, cfg: &'a ClientConfig, topic: &'a str) -> Worker<'a> {
        let mut w = Worker {
            index,
            cfg,
            topic,
            tid: unique(&format!("txn-checker-p{index}")),
            producer: None,
            stats: ProducerStats::default(),
        };
        w.start_producer();
        w
    }

    fn producer(&self) -> &ThreadedProducer<DeliveryLog> {
        self.producer.as_ref().expect("a producer is running")
    }

    /// Drops the current producer, if any, and starts a new one under the
    /// same transactional id. Its init_transactions fences the old instance
    /// and ends any transaction the old one left open.
    fn start_producer(&mut self) {
        if self.producer.take().is_some() {
            self.stats.recreated += 1;
        }
        let deadline = Instant::now() + RETRY_FOR * 2;
        loop {
            let p = producer_from(
                self.cfg.clone(),
                &[
                    ("transactional.id", self.tid.as_str()),
                    ("transaction.timeout.ms", "30000"),
                    ("linger.ms", "5"),
                    ("retry.backoff.ms", "50"),
                    ("reconnect.backoff.ms", "50"),
                    ("reconnect.backoff.max.ms", "500"),
                ],
            );
            // A retriable error (the coordinator is down or moving) may be
            // retried on the same instance; anything else needs a new one.
            loop {
                match p.init_transactions(CALL_TIMEOUT) {
                    Ok(()) => {
                        self.producer = Some(p);
                        return;
                    }
                    Err(e) => {
                        self.stats.note("init_transactions", &e);
                        assert!(
                            Instant::now() < deadline,
                            "producer {} ({}) could not init transactions for {:?}: {e}",
                            self.index,
                            self.tid,
                            RETRY_FOR * 2
                        );
                        thread::sleep(Duration::from_millis(200));
                        if kind(&e) != ErrorKind::Retriable {
                            break;
                        }
                        self.stats.retries += 1;
                    }
                }
            }
            self.stats.recreated += 1;
        }
    }

    fn begin(&mut self) {
        for _ in 0..5 {
            match self.producer().begin_transaction() {
                Ok(()) => return,
                Err(e) => {
                    // begin_transaction is local to librdkafka: it fails only
                    // when the producer is in an error state.
                    self.stats.note("begin_transaction", &e);
                    self.start_producer();
                }
            }
        }
        panic!("producer {} cannot begin a transaction", self.index);
    }

    /// Sends one record, waiting while librdkafka's queue is full.
    fn send(&self, partition: i32, id: &RecId) -> Result<(), KafkaError> {
        let value = id.value();
        let key = format!("p{}", id.producer);
        loop {
            let record = BaseRecord::<str, str, usize>::with_opaque_to(self.topic, 0)
                .partition(partition)
                .key(&key)
                .payload(&value);
            match self.producer().send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    thread::sleep(Duration::from_millis(5))
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Aborts the open transaction. Without a commit attempt before it the
    /// transaction can only end aborted, even if the abort call fails and
    /// the producer is re-created (its init_transactions aborts it).
    fn abort(&mut self, commit_attempted: bool) -> Outcome {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            match self.producer().abort_transaction(CALL_TIMEOUT) {
                Ok(()) => return Outcome::Aborted,
                Err(e) => {
                    self.stats.note("abort_transaction", &e);
                    if kind(&e) == ErrorKind::Retriable && Instant::now() < deadline {
                        self.stats.retries += 1;
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    self.start_producer();
                    return if commit_attempted {
                        Outcome::Unknown
                    } else {
                        Outcome::Aborted
                    };
                }
            }
        }
    }

    fn commit(&mut self) -> Outcome {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            match self.producer().commit_transaction(CALL_TIMEOUT) {
                Ok(()) => return Outcome::Committed,
                Err(e) => {
                    self.stats.note("commit_transaction", &e);
                    match kind(&e) {
                        ErrorKind::Retriable if Instant::now() < deadline => {
                            self.stats.retries += 1;
                            thread::sleep(Duration::from_millis(100));
                        }
                        ErrorKind::Abortable => return self.abort(true),
                        _ => {
                            self.start_producer();
                            return Outcome::Unknown;
                        }
                    }
                }
            }
        }
    }

    /// Runs one transaction of 1 to 20 records on random partitions and
    /// returns it with its outcome. `seq` is the producer's record counter.
    fn transaction(&mut self, rng: &mut Rng, number: u64, seq: &mut u64) -> Txn {
        self.begin();
        let mut records = Vec::new();
        let mut failed = false;
        for _ in 0..rng.range(1, 21) {
            let partition = rng.range(0, PARTITIONS as u64) as i32;
            let id = RecId {
                producer: self.index,
                txn: number,
                seq: *seq,
            };
            *seq += 1;
            match self.send(partition, &id) {
                Ok(()) => records.push((partition, id)),
                Err(e) => {
                    self.stats.note("send", &e);
                    failed = true;
                    break;
                }
            }
        }
        // Flushing first puts even the records of aborted transactions in
        // the log, so that read_committed has something to skip.
        if let Err(e) = self.producer().flush(CALL_TIMEOUT) {
            self.stats.note("flush", &e);
            failed = true;
        }
        for d in self.producer().context().take() {
            if let Some(e) = &d.error {
                self.stats.note("delivery", e);
                failed = true;
            }
        }
        if failed {
            self.stats.failed_sends += 1;
        }
        let outcome = if failed || rng.range(0, 100) < ABORT_PERCENT {
            self.abort(false)
        } else {
            self.commit()
        };
        Txn {
            producer: self.index,
            number,
            records,
            outcome,
        }
    }

    /// Runs transactions until `until`; the last one is always finished.
    fn run(mut self, seed: u64, until: Instant) -> (Vec<Txn>, ProducerStats) {
        let mut rng = Rng::new(seed);
        let mut history = Vec::new();
        let mut seq = 0;
        let mut number = 0;
        while Instant::now() < until {
            history.push(self.transaction(&mut rng, number, &mut seq));
            number += 1;
        }
        (history, self.stats)
    }
}

/// What one following read_committed consumer saw: each (partition,
/// offset) it was given, with the value.
#[derive(Default)]
struct Seen {
    at: BTreeMap<(i32, i64), String>,
    /// Messages polled, re-reads included.
    polled: usize,
    /// An offset given twice with different values.
    conflicts: Vec<String>,
    errors: Vec<String>,
}

/// Follows the whole topic with read_committed from offset 0 until `stop`.
fn follow(cfg: &ClientConfig, topic: &str, stop: &AtomicBool) -> Seen {
    let consumer = consumer_from(
        cfg.clone(),
        &unique("txn-checker-follow"),
        &[("isolation.level", "read_committed")],
    );
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                seen.polled += 1;
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                let at = (m.partition(), m.offset());
                if let Some(before) = seen.at.insert(at, value.clone())
                    && before != value
                {
                    seen.conflicts
                        .push(format!("p{}@{}: {before} then {value}", at.0, at.1));
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) if seen.errors.len() < KEEP_ERRORS => seen.errors.push(e.to_string()),
            Some(Err(_)) => {}
        }
    }
    seen
}

/// The high watermark and the read_committed end (the last stable offset)
/// of each partition, once they are equal (no transaction is open).
fn stable_ends(broker: &Broker, cfg: &ClientConfig, topic: &str) -> Vec<i64> {
    let plain = consumer_from(cfg.clone(), &unique("txn-checker-ends"), &[]);
    let committed = consumer_from(
        cfg.clone(),
        &unique("txn-checker-ends"),
        &[("isolation.level", "read_committed")],
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let timeout = Duration::from_secs(10);
    loop {
        let ends: Vec<(i64, i64)> = (0..PARTITIONS)
            .map(|p| {
                let hw = plain.fetch_watermarks(topic, p, timeout).map(|w| w.1);
                let lso = committed.fetch_watermarks(topic, p, timeout).map(|w| w.1);
                match (hw, lso) {
                    (Ok(hw), Ok(lso)) => (hw, lso),
                    _ => (-1, -2),
                }
            })
            .collect();
        if ends.iter().all(|(hw, lso)| hw == lso) {
            return ends.into_iter().map(|(hw, _)| hw).collect();
        }
        assert!(
            Instant::now() < deadline,
            "a transaction stays open: (high watermark, last stable offset) per partition {ends:?}\n\
             --- broker log tail ---\n{}",
            broker.log_tail(60)
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// The whole topic from offset 0 to its end as a fresh consumer with
/// `isolation` reads it: (partition, offset) -> value.
fn read_log(
    broker: &Broker,
    cfg: &ClientConfig,
    topic: &str,
    isolation: &str,
) -> BTreeMap<(i32, i64), String> {
    let consumer = consumer_from(
        cfg.clone(),
        &unique("txn-checker-final"),
        &[("isolation.level", isolation)],
    );
    let starts: Vec<(i32, Offset)> = (0..PARTITIONS).map(|p| (p, Offset::Beginning)).collect();
    let by_partition = broker
        .read_partitions_with(&consumer, topic, &starts, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{isolation} read of {topic}: {e:#}"));
    let mut out = BTreeMap::new();
    for (p, recs) in by_partition {
        for r in recs {
            let value =
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            let before = out.insert((p, r.offset), value);
            assert!(
                before.is_none(),
                "{isolation}: offset {p}@{} read twice",
                r.offset
            );
        }
    }
    out
}

/// Problems found, with a cap on how many are listed.
#[derive(Default)]
struct Violations {
    found: Vec<String>,
    count: usize,
}

impl Violations {
    fn add(&mut self, v: String) {
        self.count += 1;
        if self.found.len() < 40 {
            self.found.push(v);
        }
    }
}

/// Checks one read of the whole log against the history. `committed_view`
/// says whether it is a read_committed read (no aborted record may show,
/// every committed one must). Returns how many records of each outcome it
/// holds, and how many Unknown transactions show whole.
fn check_log(
    what: &str,
    log: &BTreeMap<(i32, i64), String>,
    history: &HashMap<(usize, u64), Txn>,
    committed_view: bool,
    violations: &mut Violations,
) -> BTreeMap<&'static str, usize> {
    let mut placed: HashMap<RecId, Vec<(i32, i64)>> = HashMap::new();
    let mut last_seq: HashMap<(i32, usize), u64> = HashMap::new();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (&(p, off), value) in log {
        let Some(id) = RecId::parse(value) else {
            violations.add(format!(
                "{what}: {p}@{off} holds a value not produced: {value:?}"
            ));
            continue;
        };
        let Some(txn) = history.get(&(id.producer, id.txn)) else {
            violations.add(format!(
                "{what}: {p}@{off} holds {value} of no known transaction"
            ));
            continue;
        };
        match txn.records.iter().find(|(_, r)| *r == id) {
            None => violations.add(format!(
                "{what}: {p}@{off} holds {value}, which its transaction never sent"
            )),
            Some((sent_to, _)) if *sent_to != p => violations.add(format!(
                "{what}: {value} was sent to partition {sent_to}, found at {p}@{off}"
            )),
            Some(_) => {}
        }
        let label = match txn.outcome {
            Outcome::Committed => "committed",
            Outcome::Aborted => "aborted",
            Outcome::Unknown => "unknown",
        };
        *counts.entry(label).or_default() += 1;
        if committed_view && txn.outcome == Outcome::Aborted {
            violations.add(format!(
                "{what}: {p}@{off} shows {value} of an aborted transaction"
            ));
        }
        if let Some(prev) = last_seq.insert((p, id.producer), id.seq)
            && prev >= id.seq
        {
            violations.add(format!(
                "{what}: partition {p} has producer {}'s s{} at offset {off} after s{prev}",
                id.producer, id.seq
            ));
        }
        placed.entry(id).or_default().push((p, off));
    }
    for (id, at) in &placed {
        if at.len() > 1 {
            violations.add(format!(
                "{what}: {} stored {} times, at {at:?}",
                id.value(),
                at.len()
            ));
        }
    }
    let mut whole_unknown = 0;
    for txn in history.values() {
        let present = txn
            .records
            .iter()
            .filter(|(_, id)| placed.contains_key(id))
            .count();
        match txn.outcome {
            Outcome::Committed if present < txn.records.len() => violations.add(format!(
                "{what}: committed transaction p{}-t{} shows {present} of its {} records",
                txn.producer,
                txn.number,
                txn.records.len()
            )),
            Outcome::Unknown if committed_view && present != 0 => {
                if present == txn.records.len() {
                    whole_unknown += 1;
                } else {
                    violations.add(format!(
                        "{what}: transaction p{}-t{} of unknown outcome shows {present} of its {} records",
                        txn.producer,
                        txn.number,
                        txn.records.len()
                    ));
                }
            }
            _ => {}
        }
    }
    counts.insert("unknown txns present", whole_unknown);
    counts
}

/// Row count, distinct offsets and the sum of offsets per partition of
/// `table`, through `sluice sql`.
fn table_summary(broker: &Broker, table: &str) -> (String, Vec<Vec<i64>>) {
    let out = sluice_cli(&[
        "sql",
        &format!(
            "SELECT kafka_partition AS p, count(*) AS n, \
             count(DISTINCT kafka_offset) AS d, sum(kafka_offset) AS s \
             FROM {table} GROUP BY kafka_partition ORDER BY kafka_partition"
        ),
        "--http",
        &broker.http_addr(),
    ]);
    let rows = out
        .lines()
        .skip(1)
        .map(|l| {
            l.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .filter(|r: &Vec<i64>| r.len() == 4)
        .collect();
    (out, rows)
}

/// Runs the checker on `topic` (created with [`PARTITIONS`] partitions)
/// through clients on `cfg`, killing `brokers[victim]` with SIGKILL mid-run
/// and restarting it.
fn run_checker(
    label: &str,
    brokers: &mut [Broker],
    victim: usize,
    cfg: &ClientConfig,
    topic: &str,
) {
    let run_for = run_time();
    let seed = now_ms() as u64;
    println!("[{label}] seed {seed}, producing for {run_for:?}, killing broker #{victim}");
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let until = started + run_for;

    let (histories, seen) = thread::scope(|s| {
        let followers: Vec<_> = (0..FOLLOWERS)
            .map(|_| s.spawn(|| follow(cfg, topic, &stop)))
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|i| {
                s.spawn(move || Worker::new(i, cfg, topic).run(seed.wrapping_add(i as u64), until))
            })
            .collect();

        thread::sleep(run_for * 2 / 5);
        brokers[victim].kill9();
        let killed_at = started.elapsed();
        thread::sleep(Duration::from_millis(800));
        brokers[victim].restart();
        println!(
            "[{label}] broker #{victim} killed at {killed_at:?}, back at {:?}",
            started.elapsed()
        );

        let histories: Vec<(Vec<Txn>, ProducerStats)> = producers
            .into_iter()
            .map(|h| h.join().expect("producer thread"))
            .collect();
        // Give the followers a moment to catch up with the last commits.
        thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let seen: Vec<Seen> = followers
            .into_iter()
            .map(|h| h.join().expect("follower thread"))
            .collect();
        (histories, seen)
    });
    println!("[{label}] producers done after {:?}", started.elapsed());

    let mut history: HashMap<(usize, u64), Txn> = HashMap::new();
    for (i, (txns, stats)) in histories.into_iter().enumerate() {
        println!(
            "[{label}] producer {i}: {} transactions, {} retries, re-created {} times, \
             {} failed sends; errors: {:?}",
            txns.len(),
            stats.retries,
            stats.recreated,
            stats.failed_sends,
            stats.errors
        );
        for t in txns {
            history.insert((t.producer, t.number), t);
        }
    }
    for outcome in [Outcome::Committed, Outcome::Aborted, Outcome::Unknown] {
        let txns: Vec<&Txn> = history.values().filter(|t| t.outcome == outcome).collect();
        let records: usize = txns.iter().map(|t| t.records.len()).sum();
        println!(
            "[{label}] {outcome:?}: {} transactions, {records} records",
            txns.len()
        );
    }

    // No transaction may stay open once every producer is done; the end
    // of the read is the read_committed watermark.
    let reader = &brokers[0];
    let ends = stable_ends(reader, cfg, topic);
    let committed = read_log(reader, cfg, topic, "read_committed");
    let uncommitted = read_log(reader, cfg, topic, "read_uncommitted");
    println!(
        "[{label}] end offsets {ends:?}; final read_committed {} records, read_uncommitted {}",
        committed.len(),
        uncommitted.len()
    );

    let mut violations = Violations::default();
    let c = check_log(
        "read_committed",
        &committed,
        &history,
        true,
        &mut violations,
    );
    let u = check_log(
        "read_uncommitted",
        &uncommitted,
        &history,
        false,
        &mut violations,
    );
    println!("[{label}] final read_committed holds {c:?}");
    println!("[{label}] final read_uncommitted holds {u:?}");
    // read_committed is read_uncommitted without the aborted records: the
    // same records at the same offsets.
    for (at, value) in &committed {
        if uncommitted.get(at) != Some(value) {
            violations.add(format!(
                "read_committed has {value} at {}@{}, read_uncommitted has {:?}",
                at.0,
                at.1,
                uncommitted.get(at)
            ));
        }
    }
    for (i, s) in seen.iter().enumerate() {
        let aborted =
            s.at.values()
                .filter(|v| {
                    RecId::parse(v)
                        .and_then(|id| history.get(&(id.producer, id.txn)))
                        .is_some_and(|t| t.outcome == Outcome::Aborted)
                })
                .count();
        println!(
            "[{label}] follower {i}: polled {}, {} distinct offsets, {aborted} aborted records; errors: {:?}",
            s.polled,
            s.at.len(),
            s.errors
        );
        for c in &s.conflicts {
            violations.add(format!("follower {i}: {c}"));
        }
        for (at, value) in &s.at {
            if let Some(id) = RecId::parse(value)
                && let Some(t) = history.get(&(id.producer, id.txn))
                && t.outcome == Outcome::Aborted
            {
                violations.add(format!(
                    "follower {i} saw {value} of an aborted transaction at {}@{}",
                    at.0, at.1
                ));
            }
            if committed.get(at) != Some(value) {
                violations.add(format!(
                    "follower {i} saw {value} at {}@{}; the final read has {:?} there",
                    at.0,
                    at.1,
                    committed.get(at)
                ));
            }
        }
    }
    assert!(
        violations.count == 0,
        "[{label}] {} violations (first {}):\n{}",
        violations.count,
        violations.found.len(),
        violations.found.join("\n")
    );
    // The run means something only if both kinds of transaction happened
    // and aborted records reached the log.
    assert!(
        c.get("committed").copied().unwrap_or(0) > 0,
        "nothing committed"
    );
    assert!(
        u.get("aborted").copied().unwrap_or(0) > 0,
        "no aborted record reached the log"
    );

    // The table holds exactly what read_committed reads, offsets included.
    // Its name is the topic's with `.` and `-` made `_`.
    let table = topic.replace(['.', '-'], "_");
    wait_for_table_rows(reader, &table, committed.len() as u64);
    let (out, rows) = table_summary(reader, &table);
    let want: Vec<Vec<i64>> = (0..PARTITIONS)
        .filter_map(|p| {
            let offsets: Vec<i64> = committed
                .keys()
                .filter(|(q, _)| *q == p)
                .map(|(_, o)| *o)
                .collect();
            (!offsets.is_empty()).then(|| {
                let n = offsets.len() as i64;
                vec![p as i64, n, n, offsets.iter().sum()]
            })
        })
        .collect();
    assert_eq!(rows, want, "table {table} per partition:\n{out}");
    let total = sluice_cli(&[
        "sql",
        &format!("SELECT count(*) AS n FROM {table}"),
        "--http",
        &reader.http_addr(),
    ]);
    assert_eq!(
        total.lines().nth(1).map(str::trim),
        Some(committed.len().to_string().as_str()),
        "{total}"
    );
    println!(
        "[{label}] table holds {} rows, as read_committed; checked in {:?}",
        committed.len(),
        started.elapsed()
    );
}

#[test]
fn txn_checker_embedded_survives_a_sigkill() {
    let broker = Broker::start_with(&["--table-commit-interval-ms", "200"]);
    let topic = unique("txn-check");
    broker.create_topic(&topic, PARTITIONS, &[]);
    let cfg = broker.client_config();
    let mut brokers = vec![broker];
    run_checker("embedded", &mut brokers, 0, &cfg, &topic);
}

#[test]
fn txn_checker_three_brokers_survive_a_sigkill() {
    let stores = SharedStores::start();
    let mut brokers: Vec<Broker> = (1..=3).map(|id| stores.broker(id)).collect();
    let topic = unique("txn-check");
    brokers[0].create_topic(&topic, PARTITIONS, &[]);
    let bootstrap = brokers
        .iter()
        .map(Broker::bootstrap)
        .collect::<Vec<_>>()
        .join(",");
    let mut cfg = brokers[0].client_config();
    cfg.set("bootstrap.servers", &bootstrap);

    // Wait until every broker is listed, then kill the leader of
    // partition 0.
    let probe = consumer_from(cfg.clone(), &unique("txn-checker-md"), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let md = probe
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let leaders: Vec<i32> = md.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.leader())
            .collect();
        if md.brokers().len() == 3 && leaders.len() == PARTITIONS as usize {
            break leaders[0];
        }
        assert!(Instant::now() < deadline, "three brokers not listed");
        thread::sleep(Duration::from_millis(200));
    };
    drop(probe);
    let victim = (leader - 1) as usize;
    run_checker("cluster", &mut brokers, victim, &cfg, &topic);
}
