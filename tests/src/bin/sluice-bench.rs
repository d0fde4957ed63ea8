//! Produce/consume benchmark for sluice (or any Kafka-compatible broker),
//! driven through librdkafka.
//!
//! Without `--broker` it starts its own `sluice serve` (the `sluice` binary
//! next to this executable, or `--sluice-bin`) on a temporary data directory
//! and stops it at the end.
//!
//! Throughput: `sluice-bench --records 1000000`
//! Latency at a fixed offered load: `sluice-bench --rate 20 --duration-secs 60`

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_tests::services::{Postgres, S3Server};
use sluice_tests::{Broker, Rng, block_on, orders, sluice_bin};

const MB: f64 = 1_000_000.0;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-bench",
    about = "Produce then consume records through librdkafka and report throughput and ack latency",
    after_help = "Throughput mode: --rate 0 (default). Latency mode: e.g. --rate 20 --duration-secs 60.\n\
                  MB means 10^6 bytes of record values."
)]
struct Args {
    /// Address of a running broker. Without it, an embedded `sluice serve` is
    /// started on a temporary data directory.
    #[arg(long)]
    broker: Option<String>,

    /// Broker binary for embedded mode (default: `sluice` next to this executable).
    #[arg(long)]
    sluice_bin: Option<PathBuf>,

    /// Run the embedded brokers on a private PostgreSQL (metadata) and a
    /// private S3 API server (moto), both on 127.0.0.1, instead of SQLite
    /// and local files; reports object-store requests per MB produced.
    #[arg(long)]
    shared_stores: bool,

    /// Embedded brokers to start (more than one needs --shared-stores);
    /// the producer bootstraps from all of them.
    #[arg(long, default_value_t = 1)]
    brokers: u32,

    /// Extra arguments passed to `sluice serve` in embedded mode.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,

    /// Size of each record value in bytes.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,

    /// Number of partitions of the benchmark topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,

    /// Producer acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,

    /// Compression codec: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,

    /// Number of records to produce (default 500000 unless --duration-secs is given).
    #[arg(long)]
    records: Option<u64>,

    /// Produce for this many seconds (stops earlier if --records is reached).
    #[arg(long)]
    duration_secs: Option<f64>,

    /// Offered produce rate in MB/s; 0 means as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,

    /// Topic name (created if missing). Default: a fresh unique name.
    #[arg(long)]
    topic: Option<String>,

    /// Producer linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,

    /// Enable the idempotent producer (requires --acks all).
    #[arg(long)]
    idempotence: bool,

    /// Produce in transactions of this many records each (a transactional
    /// producer: idempotent, acks=all; each transaction is committed before
    /// the next begins). 0: no transactions.
    #[arg(long, default_value_t = 0)]
    transaction_size: u64,

    /// Skip the consume phase.
    #[arg(long)]
    no_consume: bool,

    /// Extra librdkafka producer setting, key=value (repeatable).
    #[arg(long = "producer-config", value_parser = parse_kv)]
    producer_config: Vec<(String, String)>,

    /// Extra librdkafka consumer setting, key=value (repeatable).
    #[arg(long = "consumer-config", value_parser = parse_kv)]
    consumer_config: Vec<(String, String)>,

    /// Consume everything once per client id given (repeatable), e.g.
    /// `--consume-as bench,purpose=billing --consume-as bench` to compare
    /// a purpose that sees every field with a redacted reader.
    #[arg(long = "consume-as", value_name = "CLIENT_ID")]
    consume_as: Vec<String>,

    /// Record values: `random` bytes of --record-size, or framed Protobuf
    /// orders (~1 KiB, nested) either `unbound` (no subject registered, so
    /// the broker does not validate) or `validated` (schema registered under
    /// TOPIC-value, every record decoded and checked), or `guarded`:
    /// validated orders whose schema marks fields for purposes (the email
    /// billing-only, street and note PII); an embedded broker gets a policy
    /// file in which `billing` sees everything and `analytics` gets hashes.
    #[arg(long, value_enum, default_value_t = Values::Random)]
    values: Values,

    /// Schema registry address for `--values validated` with `--broker`
    /// (embedded mode knows its own).
    #[arg(long)]
    registry: Option<String>,

    /// Measure freshness: how long after its send each record becomes
    /// visible in the topic's Iceberg table (polling the REST catalog).
    #[arg(long)]
    freshness: bool,

    /// HTTP API address (REST catalog) for --freshness with --broker
    /// (embedded mode knows its own).
    #[arg(long)]
    http: Option<String>,

    /// Iceberg namespace of topic tables, as the broker's --table-namespace.
    #[arg(long, default_value = "kafka")]
    table_namespace: String,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// Records the send-to-ack latency of every delivery.
struct BenchContext {
    start: Instant,
    latency_us: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// (partition, offset) → send time in ns since `start`, when measuring
    /// freshness.
    sent_at: Option<Mutex<HashMap<(i32, i64), u64>>>,
}

impl ClientContext for BenchContext {}

impl ProducerContext for BenchContext {
    /// Nanoseconds since `start` at the time of sending.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_ns: usize) {
        let now_ns = self.start.elapsed().as_nanos() as u64;
        match result {
            Ok(m) => {
                let us = now_ns.saturating_sub(sent_at_ns as u64) / 1_000;
                self.latency_us.lock().unwrap().saturating_record(us.max(1));
                self.acked.fetch_add(1, Ordering::Relaxed);
                let len = m.payload().map_or(0, <[u8]>::len) as u64;
                self.acked_bytes.fetch_add(len, Ordering::Relaxed);
                if let Some(sent) = &self.sent_at {
                    sent.lock()
                        .unwrap()
                        .insert((m.partition(), m.offset()), sent_at_ns as u64);
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap();
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

struct ProduceResult {
    sent_at: HashMap<(i32, i64), u64>,
    acked: u64,
    failed: u64,
    bytes: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
    first_error: Option<String>,
}

struct ConsumeResult {
    records: u64,
    bytes: u64,
    elapsed: Duration,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("sluice-bench: {e:#}");
        std::process::exit(1);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Values {
    Random,
    Unbound,
    Validated,
    Guarded,
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.record_size == 0 {
        bail!("--record-size must be at least 1");
    }
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let mut embedded: Vec<Broker> = Vec::new();
    let mut registry = args.registry.clone();
    let mut http = args.http.clone();
    let mut data_dir = None;
    let mut metrics_addrs: Vec<String> = Vec::new();
    // The private servers of --shared-stores, stopped when dropped.
    let mut stores = None;
    let bootstrap = match &args.broker {
        Some(addr) => addr.clone(),
        None => {
            let bin = match &args.sluice_bin {
                Some(p) => p.clone(),
                None => sluice_bin()?,
            };
            let mut serve_args: Vec<String> = args.serve_args.clone();
            if args.values == Values::Guarded {
                let path = std::env::temp_dir()
                    .join(format!("sluice-bench-policy-{}.toml", std::process::id()));
                std::fs::write(&path, orders::GUARDED_POLICY_FILE)
                    .context("write the bench policy file")?;
                serve_args.push("--policy-file".into());
                serve_args.push(path.display().to_string());
            }
            if args.brokers > 1 && !args.shared_stores {
                bail!("--brokers {} needs --shared-stores", args.brokers);
            }
            let mut env = Vec::new();
            if args.shared_stores {
                eprintln!("starting PostgreSQL and an S3 API server on 127.0.0.1");
                let pg = Postgres::start()?;
                let s3 = S3Server::start()?;
                s3.create_bucket("sluice-bench")?;
                serve_args.extend([
                    "--metadata-url".to_string(),
                    pg.create_database("sluice")?,
                    "--object-store-url".into(),
                    "s3://sluice-bench/data".into(),
                    "--s3-endpoint".into(),
                    s3.endpoint(),
                ]);
                env = s3.env();
                stores = Some((pg, s3));
            }
            let mut addrs = Vec::new();
            for id in 1..=args.brokers {
                let mut broker_args = serve_args.clone();
                broker_args.extend(["--broker-id".to_string(), id.to_string()]);
                let broker_args: Vec<&str> = broker_args.iter().map(String::as_str).collect();
                eprintln!("starting embedded broker {id} ({})", bin.display());
                let broker = Broker::try_start_bin_env(bin.clone(), &broker_args, &env)?;
                addrs.push(broker.bootstrap());
                registry.get_or_insert_with(|| broker.registry_addr());
                http.get_or_insert_with(|| broker.http_addr());
                metrics_addrs.push(broker.http_addr());
                if !args.shared_stores {
                    data_dir = Some(broker.data_dir());
                }
                embedded.push(broker);
            }
            addrs.join(",")
        }
    };

    let result = bench(
        &args,
        &bootstrap,
        registry.as_deref(),
        http.as_deref(),
        data_dir.as_deref(),
        &metrics_addrs,
    );

    for mut broker in embedded {
        eprintln!("stopping embedded broker");
        let status = broker.terminate();
        if !status.success() {
            eprintln!("embedded broker exited with {status}");
        }
        if result.is_err() {
            eprintln!("--- broker log tail ---\n{}", broker.log_tail(50));
        }
    }
    drop(stores);
    result
}

fn bench(
    args: &Args,
    bootstrap: &str,
    registry: Option<&str>,
    http: Option<&str>,
    data_dir: Option<&Path>,
    metrics_addrs: &[String],
) -> anyhow::Result<()> {
    let topic = args.topic.clone().unwrap_or_else(|| {
        format!(
            "bench-{}-{}",
            std::process::id(),
            sluice_tests::now_ms() % 1_000_000
        )
    });
    let records_limit = match (args.records, args.duration_secs) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 500_000,
    };
    let duration_limit = args.duration_secs.map(Duration::from_secs_f64);

    println!("sluice-bench");
    println!(
        "  broker {bootstrap}{}, topic {topic}, {} partitions",
        if args.broker.is_some() {
            ""
        } else {
            " (embedded)"
        },
        args.partitions
    );
    println!(
        "  record size {} B, acks={}, compression={}, linger.ms={}, idempotence={}, records per transaction={}",
        args.record_size,
        args.acks,
        args.compression,
        args.linger_ms,
        args.idempotence,
        match args.transaction_size {
            0 => "no transactions".to_string(),
            n => n.to_string(),
        }
    );
    println!(
        "  offered rate: {}; stop after {}{}",
        if args.rate > 0.0 {
            format!("{} MB/s", args.rate)
        } else {
            "unlimited".to_string()
        },
        if records_limit == u64::MAX {
            "-".to_string()
        } else {
            format!("{records_limit} records")
        },
        duration_limit
            .map(|d| format!(" / {:.1} s", d.as_secs_f64()))
            .unwrap_or_default()
    );

    create_topic(bootstrap, &topic, args.partitions)?;

    let values = match args.values {
        Values::Random => None,
        Values::Unbound | Values::Validated | Values::Guarded => {
            let id = if args.values == Values::Guarded {
                let registry =
                    registry.context("--values guarded needs --registry with --broker")?;
                let id =
                    orders::register_guarded_order_schema(registry, &format!("{topic}-value"))?;
                println!(
                    "  values: framed Protobuf orders with field policies, schema id {id}: validated, redacted by purpose"
                );
                id
            } else if args.values == Values::Validated {
                let registry =
                    registry.context("--values validated needs --registry with --broker")?;
                let id = orders::register_order_schema(registry, &format!("{topic}-value"))?;
                println!(
                    "  values: framed Protobuf orders, schema id {id} registered: every record validated"
                );
                id
            } else {
                println!("  values: framed Protobuf orders, no schema registered: not validated");
                1
            };
            let pool: Vec<Vec<u8>> = (0..512)
                .map(|n| orders::frame(id, &orders::encode_order(n, true)))
                .collect();
            let avg = pool.iter().map(Vec::len).sum::<usize>() / pool.len();
            println!("  order record size ~{avg} B");
            Some(pool)
        }
    };

    let start = Instant::now();
    let table_path = format!(
        "/v1/namespaces/{}/tables/{}",
        args.table_namespace,
        topic.replace(['.', '-'], "_")
    );
    let watching = AtomicBool::new(true);
    let (produced, snapshots) = thread::scope(|s| -> anyhow::Result<_> {
        let watcher = match (args.freshness, http) {
            (true, Some(http)) => {
                Some(s.spawn(|| watch_table(http, &table_path, start, &watching)))
            }
            (true, None) => bail!("--freshness needs --http with --broker"),
            _ => None,
        };
        let produced = produce(
            args,
            start,
            bootstrap,
            &topic,
            records_limit,
            duration_limit,
            values.as_deref(),
        );
        // Let the watcher see the last commits (a few commit intervals).
        let visible_deadline = Instant::now() + Duration::from_secs(30);
        if let (Ok(p), Some(_)) = (&produced, &watcher) {
            while Instant::now() < visible_deadline && VISIBLE.load(Ordering::Relaxed) < p.acked {
                thread::sleep(Duration::from_millis(20));
            }
        }
        watching.store(false, Ordering::Relaxed);
        let snapshots = match watcher {
            Some(w) => w.join().map_err(|_| anyhow!("table watcher panicked"))??,
            None => Vec::new(),
        };
        Ok((produced?, snapshots))
    })?;
    let secs = produced.elapsed.as_secs_f64();
    let h = &produced.latency_us;
    println!();
    println!("produce");
    println!(
        "  {} records acked ({} failed) in {:.2} s",
        produced.acked, produced.failed, secs
    );
    println!(
        "  throughput   {:>10.1} MB/s   {:>12.0} records/s",
        produced.bytes as f64 / MB / secs,
        produced.acked as f64 / secs
    );
    if h.is_empty() {
        println!("  ack latency  (no successful deliveries)");
    } else {
        let ms = |us: u64| us as f64 / 1_000.0;
        println!(
            "  ack latency  p50 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms   max {:.2} ms",
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max())
        );
    }
    if let Some(e) = &produced.first_error {
        println!("  first delivery error: {e}");
    }
    if args.freshness {
        report_freshness(&produced, &snapshots, data_dir)?;
    }
    if args.shared_stores {
        report_object_store(metrics_addrs, produced.bytes)?;
    }

    if !args.no_consume {
        let passes: Vec<Option<&str>> = if args.consume_as.is_empty() {
            vec![None]
        } else {
            args.consume_as.iter().map(|c| Some(c.as_str())).collect()
        };
        for (pass, client_id) in passes.into_iter().enumerate() {
            let consumed = consume(args, bootstrap, &topic, pass, client_id)?;
            let secs = consumed.elapsed.as_secs_f64();
            println!();
            match client_id {
                Some(id) => println!("consume as client.id={id}"),
                None => println!("consume"),
            }
            println!("  {} records in {:.2} s", consumed.records, secs);
            println!(
                "  throughput   {:>10.1} MB/s   {:>12.0} records/s",
                consumed.bytes as f64 / MB / secs,
                consumed.records as f64 / secs
            );
            if consumed.records < produced.acked {
                bail!(
                    "consumed {} records but {} were acknowledged",
                    consumed.records,
                    produced.acked
                );
            }
        }
    }
    if produced.failed > 0 {
        bail!("{} deliveries failed", produced.failed);
    }
    Ok(())
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("create admin client")?;
    let timeout = Duration::from_secs(30);
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let res = block_on(admin.create_topics([&new], &opts), timeout)?.context("CreateTopics")?;
    match res.first() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
            eprintln!("topic {topic} already exists; using it as is");
            Ok(())
        }
        Some(Err((_, code))) => Err(anyhow!("creating topic {topic}: {code:?}")),
        None => Err(anyhow!("empty CreateTopics result")),
    }
}

/// A buffer of moderately compressible bytes; record values are windows into it.
fn payload_pool(record_size: usize) -> Vec<u8> {
    let mut rng = Rng::new(42);
    let mut pool = Vec::with_capacity(4 << 20);
    while pool.len() < (4 << 20) + record_size {
        let chunk = rng.range(16, 256) as usize;
        if rng.next_u64().is_multiple_of(2) {
            pool.extend(rng.bytes(chunk));
        } else {
            pool.extend(rng.text(chunk));
        }
    }
    pool
}

#[allow(clippy::too_many_arguments)]
fn produce(
    args: &Args,
    start: Instant,
    bootstrap: &str,
    topic: &str,
    records_limit: u64,
    duration_limit: Option<Duration>,
    values: Option<&[Vec<u8>]>,
) -> anyhow::Result<ProduceResult> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", args.linger_ms.to_string())
        .set("enable.idempotence", args.idempotence.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "300000");
    if args.transaction_size > 0 {
        cfg.set(
            "transactional.id",
            format!("sluice-bench-{}", std::process::id()),
        )
        .set("acks", "all")
        .set("enable.idempotence", "true");
    }
    for (k, v) in &args.producer_config {
        cfg.set(k, v);
    }
    let ctx = BenchContext {
        start,
        sent_at: args.freshness.then(|| Mutex::new(HashMap::new())),
        latency_us: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        acked: AtomicU64::new(0),
        acked_bytes: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let producer: ThreadedProducer<BenchContext> =
        cfg.create_with_context(ctx).context("create producer")?;
    let txn_timeout = Duration::from_secs(60);
    let in_transactions = args.transaction_size > 0;
    if in_transactions {
        producer
            .init_transactions(txn_timeout)
            .context("init transactions")?;
    }

    let pool = payload_pool(args.record_size);
    let window = pool.len() - args.record_size;
    let bytes_per_sec = args.rate * MB;
    // Pace by the bytes actually sent: Protobuf orders are not --record-size.
    let value_size = match values {
        Some(v) => v.iter().map(Vec::len).sum::<usize>() as f64 / v.len().max(1) as f64,
        None => args.record_size as f64,
    };
    let sent = AtomicU64::new(0);
    let done = AtomicBool::new(false);

    thread::scope(|s| -> anyhow::Result<()> {
        s.spawn(|| {
            progress("produce", start, &done, || {
                let ctx = producer.context();
                (
                    sent.load(Ordering::Relaxed),
                    ctx.acked.load(Ordering::Relaxed),
                    ctx.acked_bytes.load(Ordering::Relaxed),
                )
            })
        });
        let result = (|| {
            let mut i: u64 = 0;
            while i < records_limit {
                let elapsed = start.elapsed();
                if duration_limit.is_some_and(|d| elapsed >= d) {
                    break;
                }
                if bytes_per_sec > 0.0 {
                    let due = (i as f64 * value_size) / bytes_per_sec;
                    let ahead = due - elapsed.as_secs_f64();
                    if ahead > 0.000_5 {
                        thread::sleep(Duration::from_secs_f64(ahead));
                    }
                }
                if in_transactions && i.is_multiple_of(args.transaction_size) {
                    if i > 0 {
                        producer
                            .commit_transaction(txn_timeout)
                            .context("commit transaction")?;
                    }
                    producer.begin_transaction().context("begin transaction")?;
                }
                let value: &[u8] = match values {
                    Some(v) => &v[(i % v.len() as u64) as usize],
                    None => {
                        let off = ((i.wrapping_mul(7919)) % window as u64) as usize;
                        &pool[off..off + args.record_size]
                    }
                };
                loop {
                    let sent_at = start.elapsed().as_nanos() as usize;
                    let rec: BaseRecord<'_, [u8], [u8], usize> =
                        BaseRecord::with_opaque_to(topic, sent_at).payload(value);
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            thread::sleep(Duration::from_micros(200));
                        }
                        Err((e, _)) => return Err(anyhow!("send failed: {e}")),
                    }
                }
                i += 1;
                sent.store(i, Ordering::Relaxed);
            }
            if in_transactions && i > 0 {
                producer
                    .commit_transaction(txn_timeout)
                    .context("commit the last transaction")?;
            }
            producer
                .flush(Duration::from_secs(300))
                .context("flush (waiting for outstanding acks)")
        })();
        done.store(true, Ordering::Relaxed);
        result
    })?;

    let elapsed = start.elapsed();
    let ctx = producer.context();
    let latency_us = ctx.latency_us.lock().unwrap().clone();
    let first_error = ctx.first_error.lock().unwrap().clone();
    let sent_at = ctx
        .sent_at
        .as_ref()
        .map(|m| std::mem::take(&mut *m.lock().unwrap()))
        .unwrap_or_default();
    Ok(ProduceResult {
        sent_at,
        acked: ctx.acked.load(Ordering::Relaxed),
        failed: ctx.failed.load(Ordering::Relaxed),
        bytes: ctx.acked_bytes.load(Ordering::Relaxed),
        elapsed,
        latency_us,
        first_error,
    })
}

/// Prints one progress line per second until `done` is set.
fn progress(phase: &str, start: Instant, done: &AtomicBool, sample: impl Fn() -> (u64, u64, u64)) {
    let mut last = (0u64, 0u64);
    let mut next = start + Duration::from_secs(1);
    while !done.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        next += Duration::from_secs(1);
        let (sent, acked, bytes) = sample();
        eprintln!(
            "[{phase} {:>5.1}s] sent {sent:>10}  acked {acked:>10}  {:>8.1} MB/s  {:>9} records/s",
            start.elapsed().as_secs_f64(),
            (bytes - last.1) as f64 / MB,
            acked - last.0
        );
        last = (acked, bytes);
    }
}

fn consume(
    args: &Args,
    bootstrap: &str,
    topic: &str,
    pass: usize,
    client_id: Option<&str>,
) -> anyhow::Result<ConsumeResult> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", format!("sluice-bench-{pass}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in &args.consumer_config {
        cfg.set(k, v);
    }
    if let Some(id) = client_id {
        cfg.set("client.id", id);
    }
    let consumer: BaseConsumer = cfg.create().context("create consumer")?;

    let mut tpl = TopicPartitionList::new();
    let mut remaining: Vec<i64> = Vec::new();
    let mut end: Vec<i64> = Vec::new();
    for p in 0..args.partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .with_context(|| format!("watermarks of partition {p}"))?;
        remaining.push(high - low);
        end.push(high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let target: i64 = remaining.iter().sum();
    consumer.assign(&tpl)?;

    let start = Instant::now();
    let mut records: u64 = 0;
    let mut bytes: u64 = 0;
    let mut last_progress = Instant::now();
    let mut next_report = start + Duration::from_secs(1);
    let mut last = (0u64, 0u64);
    let mut left = target;
    while left > 0 {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition() as usize;
                records += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
                if m.offset() < end[p] && remaining[p] > 0 {
                    remaining[p] -= 1;
                    left -= 1;
                }
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {}
        }
        if last_progress.elapsed() > Duration::from_secs(30) {
            bail!("consume stalled for 30 s with {left} of {target} records left");
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            eprintln!(
                "[consume {:>5.1}s] read {records:>10} of {target:>10}  {:>8.1} MB/s  {:>9} records/s",
                start.elapsed().as_secs_f64(),
                (bytes - last.1) as f64 / MB,
                records - last.0
            );
            last = (records, bytes);
        }
    }
    Ok(ConsumeResult {
        records,
        bytes,
        elapsed: start.elapsed(),
    })
}

/// Records seen in table snapshots so far (for the end-of-run wait).
static VISIBLE: AtomicU64 = AtomicU64::new(0);

/// One table snapshot as first seen: when, and the offsets it added.
struct SeenSnapshot {
    visible_ns: u64,
    ranges: Vec<(i32, i64, i64)>,
}

/// Polls the REST catalog for the table's snapshots until `watching` is
/// cleared, noting when each new snapshot became visible.
fn watch_table(
    http: &str,
    path: &str,
    start: Instant,
    watching: &AtomicBool,
) -> anyhow::Result<Vec<SeenSnapshot>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    while watching.load(Ordering::Relaxed) {
        let (status, body) = orders::http(http, "GET", path, None)?;
        let now = start.elapsed().as_nanos() as u64;
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).context("load table answer")?;
            let snapshots = v["metadata"]["snapshots"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for snap in snapshots {
                let id = snap["snapshot-id"].as_i64().unwrap_or_default();
                if !seen.insert(id) {
                    continue;
                }
                let ranges: Vec<(i32, i64, i64)> = snap["summary"]["sluice.offsets"]
                    .as_str()
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|r| {
                        let (p, span) = r.split_once(':')?;
                        let (a, b) = span.split_once('-')?;
                        Some((p.parse().ok()?, a.parse().ok()?, b.parse().ok()?))
                    })
                    .collect();
                let n: i64 = ranges.iter().map(|(_, a, b)| b - a + 1).sum();
                VISIBLE.fetch_add(n as u64, Ordering::Relaxed);
                out.push(SeenSnapshot {
                    visible_ns: now,
                    ranges,
                });
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(out)
}

/// Object-store requests the brokers made (segments and table files),
/// per MB of record values produced, once the archiver has caught up.
fn report_object_store(metrics_addrs: &[String], produced_bytes: u64) -> anyhow::Result<()> {
    // Let the last table commits land (a few commit intervals).
    thread::sleep(Duration::from_secs(5));
    let mut by_kind: BTreeMap<String, f64> = BTreeMap::new();
    for addr in metrics_addrs {
        let text = http_get(addr, "/metrics")?;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("sluice_object_store_requests_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            let kind = format!("{} {}", label("data"), label("op"));
            *by_kind.entry(kind).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    let total: f64 = by_kind.values().sum();
    let mb = produced_bytes as f64 / MB;
    println!();
    println!("object store");
    println!(
        "  {total:.0} requests for {mb:.1} MB produced: {:.2} requests/MB",
        total / mb.max(f64::MIN_POSITIVE)
    );
    let parts: Vec<String> = by_kind.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
    println!("  {}", parts.join(", "));
    Ok(())
}

/// A plain HTTP/1.0 GET of `path` on `addr`.
fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    conn.read_to_string(&mut body)?;
    Ok(body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(body))
}

fn report_freshness(
    produced: &ProduceResult,
    snapshots: &[SeenSnapshot],
    data_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for snap in snapshots {
        for &(p, a, b) in &snap.ranges {
            for offset in a..=b {
                if let Some(sent) = produced.sent_at.get(&(p, offset)) {
                    h.saturating_record((snap.visible_ns.saturating_sub(*sent) / 1_000).max(1));
                }
            }
        }
    }
    println!();
    println!("freshness (send → visible in the Iceberg table, via the REST catalog)");
    if h.is_empty() {
        println!("  no record became visible");
    } else {
        let ms = |us: u64| us as f64 / 1_000.0;
        println!(
            "  {} of {} acked records seen   p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms   ({} commits)",
            h.len(),
            produced.acked,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            snapshots.len()
        );
    }
    if let Some(dir) = data_dir {
        let data = dir_size(&dir.join("warehouse"));
        println!(
            "  table files on disk {:.1} MB (Parquet + Iceberg metadata) for {:.1} MB of record values ({:.2}x)",
            data as f64 / MB,
            produced.bytes as f64 / MB,
            data as f64 / produced.bytes.max(1) as f64
        );
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
