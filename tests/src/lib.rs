//! Harness for end-to-end tests and benchmarks of the `sluice` broker.
//!
//! [`Broker`] runs the real `sluice serve` binary as a child process on free
//! loopback ports with its own temporary data directory, and offers helpers to
//! talk to it the way users do: librdkafka (through `rdkafka`), `kcat` and the
//! Python Kafka clients.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Headers, Message};
use rdkafka::producer::{ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};

pub mod gateway;
pub mod orders;
pub mod services;

pub use gateway::Gateway;

/// How long to wait for a freshly spawned broker to accept Kafka connections.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout for a single client operation (metadata, admin, ...).
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a server's log file for appending and marks where this start
/// begins (`banner`), so a restarted server's output stays in one file.
pub fn open_log(path: &std::path::Path, banner: &str) -> anyhow::Result<std::fs::File> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    writeln!(log, "===== {banner} =====")?;
    Ok(log)
}

/// A command running `bin` without the caller's `SLUICE_*` settings, so a
/// test's server sees only the flags the test gives. SLUICE_LOG passes
/// through, so a failing test can be rerun with more logging.
pub fn sluice_command(bin: &std::path::Path) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLUICE_") && k != "SLUICE_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Locates the `sluice` binary.
///
/// `SLUICE_BIN` wins if set. Otherwise the directories above the current
/// executable are searched for a file called `sluice`: a test binary lives in
/// `target/<profile>/deps/` and a tool such as `sluice-bench` in
/// `target/<profile>/`, and in both cases the broker sits in
/// `target/<profile>/sluice`.
pub fn sluice_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("SLUICE_BIN={} does not exist", p.display());
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let name = format!("sluice{}", std::env::consts::EXE_SUFFIX);
    for dir in exe.ancestors().skip(1) {
        let candidate = dir.join(&name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "could not find the `sluice` binary above {}; build it with \
         `cargo build --workspace --bins` or set SLUICE_BIN",
        exe.display()
    )
}

/// A producer on `cfg` plus `extra`, its delivery reports recorded.
pub fn producer_from(
    mut cfg: ClientConfig,
    extra: &[(&str, &str)],
) -> ThreadedProducer<DeliveryLog> {
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create_with_context(DeliveryLog::default())
        .expect("create producer")
}

/// A consumer on `cfg` meant for `assign()`: it has a group id (which
/// librdkafka wants) but never commits or stores offsets, and reports
/// partition EOF. `extra` settings win.
pub fn consumer_from(mut cfg: ClientConfig, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("create consumer")
}

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A `sluice serve` child process with its own data directory.
///
/// The data directory survives [`Broker::terminate`], [`Broker::kill9`] and
/// [`Broker::restart`]; it is removed when the `Broker` is dropped. A restart
/// reuses the same ports, so the broker comes back at the same address and
/// clients created before the restart can reconnect to it.
pub struct Broker {
    dir: tempfile::TempDir,
    bin: PathBuf,
    extra_args: Vec<String>,
    /// Environment variables set for the broker process.
    env: Vec<(String, String)>,
    kafka_port: u16,
    registry_port: u16,
    http_port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    /// Starts a broker with default settings. Panics (with the broker log) on failure.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts a broker with extra `sluice serve` arguments. Panics on failure.
    pub fn start_with(args: &[&str]) -> Broker {
        match Broker::try_start_with(args) {
            Ok(b) => b,
            Err(e) => panic!("failed to start sluice: {e:#}"),
        }
    }

    /// Starts a broker with extra `sluice serve` arguments.
    pub fn try_start_with(args: &[&str]) -> anyhow::Result<Broker> {
        Broker::try_start_bin(sluice_bin()?, args)
    }

    /// Starts the given broker binary with extra `sluice serve` arguments.
    pub fn try_start_bin(bin: PathBuf, args: &[&str]) -> anyhow::Result<Broker> {
        Broker::try_start_bin_env(bin, args, &[])
    }

    /// Starts a broker with extra arguments and environment variables.
    pub fn try_start_env(args: &[&str], env: &[(String, String)]) -> anyhow::Result<Broker> {
        Broker::try_start_bin_env(sluice_bin()?, args, env)
    }

    pub fn try_start_bin_env(
        bin: PathBuf,
        args: &[&str],
        env: &[(String, String)],
    ) -> anyhow::Result<Broker> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-test-")
            .tempdir()
            .context("create temp dir")?;
        let mut broker = Broker {
            dir,
            bin,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            env: env.to_vec(),
            kafka_port: free_port(),
            registry_port: free_port(),
            http_port: free_port(),
            child: None,
            starts: 0,
        };
        // A port free a moment ago can be taken before the broker binds it
        // (by another test's client connection or listener): start again
        // on other ports.
        let mut attempts = 0;
        loop {
            match broker.spawn_and_wait() {
                Ok(()) => return Ok(broker),
                Err(e) if attempts < 4 && format!("{e:#}").contains("Address already in use") => {
                    attempts += 1;
                    broker.kafka_port = free_port();
                    broker.registry_port = free_port();
                    broker.http_port = free_port();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `host:port` of the Kafka listener.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// Socket address of the Kafka listener.
    pub fn kafka_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.kafka_port))
    }

    /// `host:port` of the schema registry listener.
    pub fn registry_addr(&self) -> String {
        format!("127.0.0.1:{}", self.registry_port)
    }

    /// `host:port` of the HTTP listener.
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file that collects the broker's stdout and stderr across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// The whole broker log so far.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the broker log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Process id of the running broker.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the broker process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Panics with the log tail if the broker process has exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!(
                "sluice exited unexpectedly with {status}\n--- broker log tail ---\n{}",
                self.log_tail(100)
            );
        }
        assert!(self.child.is_some(), "sluice is not running");
    }

    /// Sends SIGTERM and waits for the process to exit. Panics if it does
    /// not exit within [`SHUTDOWN_TIMEOUT`].
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is not running");
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "sluice did not exit within {:?} of SIGTERM\n--- broker log tail ---\n{}",
                        SHUTDOWN_TIMEOUT,
                        self.log_tail(100)
                    );
                }
            }
        }
    }

    /// Kills the broker with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker gracefully if it is running (see [`Broker::terminate`])
    /// and starts it again on the same data directory and ports.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        if let Err(e) = self.spawn_and_wait() {
            panic!("failed to restart sluice: {e:#}");
        }
    }

    /// Like [`Broker::restart`], with `args` in place of the extra
    /// `sluice serve` arguments it was started with.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// Like [`Broker::restart`], but a failed start is returned, not a panic.
    pub fn try_restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.terminate();
        }
        self.spawn_and_wait()
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = open_log(&self.log_path(), &format!("sluice start #{}", self.starts))?;
        let mut cmd = sluice_command(&self.bin);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.env("NO_COLOR", "1")
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--kafka-addr")
            .arg(self.bootstrap())
            .arg("--registry-addr")
            .arg(self.registry_addr())
            .arg("--http-addr")
            .arg(self.http_addr())
            // If this test process dies without dropping the broker, the
            // broker stops on its own instead of lingering.
            .arg("--exit-with-parent")
            .arg(std::process::id().to_string())
            // `{kafka}` in an argument stands for the harness's Kafka
            // address (e.g. in a `--listeners` list).
            .args(
                self.extra_args
                    .iter()
                    .map(|a| a.replace("{kafka}", &self.bootstrap())),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        self.child = Some(child);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = self.kafka_addr();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "sluice exited during startup with {status}\n--- broker log tail ---\n{}",
                    self.log_tail(100)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!(
                    "sluice did not accept connections on {addr} within {STARTUP_TIMEOUT:?}\n\
                     --- broker log tail ---\n{}",
                    self.log_tail(100)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client configuration pointing at this broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", self.bootstrap())
            .set("broker.address.family", "v4");
        cfg
    }

    /// An admin client for this broker.
    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config().create().expect("create admin client")
    }

    /// A producer whose delivery reports are recorded in a [`DeliveryLog`].
    ///
    /// `extra` settings are applied on top of the bootstrap address.
    pub fn producer(&self, extra: &[(&str, &str)]) -> ThreadedProducer<DeliveryLog> {
        producer_from(self.client_config(), extra)
    }

    /// A consumer meant for `assign()`: it has a group id (which librdkafka
    /// wants) but never commits or stores offsets, and reports partition EOF.
    pub fn consumer(&self, extra: &[(&str, &str)]) -> BaseConsumer {
        consumer_from(self.client_config(), "sluice-tests", extra)
    }

    /// Creates a topic with the given partition count and topic configs and
    /// panics unless the broker reports success.
    pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin = self.admin();
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
        let res = block_on(admin.create_topics([&topic], &opts), OP_TIMEOUT)
            .expect("CreateTopics timed out")
            .expect("CreateTopics request failed");
        assert_eq!(res.len(), 1);
        if let Err((t, code)) = &res[0] {
            panic!("creating topic {t} failed: {code:?}");
        }
    }

    /// Topic name -> partition count, as listed by a Metadata request for all
    /// topics.
    pub fn topics(&self) -> BTreeMap<String, usize> {
        let consumer = self.consumer(&[]);
        let md = consumer
            .fetch_metadata(None, OP_TIMEOUT)
            .expect("Metadata request failed");
        md.topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect()
    }

    /// Low and high watermark of a partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        let consumer = self.consumer(&[]);
        consumer
            .fetch_watermarks(topic, partition, OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("ListOffsets for {topic}/{partition} failed: {e}"))
    }

    /// Reads the given partitions from the given start offsets until every one
    /// of them reports end-of-partition. Returns the records per partition.
    pub fn read_partitions(
        &self,
        topic: &str,
        starts: &[(i32, Offset)],
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<i32, Vec<Rec>>> {
        self.read_partitions_with(&self.consumer(&[]), topic, starts, timeout)
    }

    /// Like [`Broker::read_partitions`] with a caller-provided consumer.
    pub fn read_partitions_with(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        starts: &[(i32, Offset)],
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<i32, Vec<Rec>>> {
        let mut tpl = TopicPartitionList::new();
        for (p, off) in starts {
            tpl.add_partition_offset(topic, *p, *off)?;
        }
        consumer.assign(&tpl)?;
        let mut out: BTreeMap<i32, Vec<Rec>> = starts.iter().map(|(p, _)| (*p, vec![])).collect();
        let mut at_eof: BTreeMap<i32, bool> = starts.iter().map(|(p, _)| (*p, false)).collect();
        let mut errors: Vec<String> = vec![];
        let deadline = Instant::now() + timeout;
        while at_eof.values().any(|e| !e) {
            if Instant::now() > deadline {
                let total: usize = out.values().map(Vec::len).sum();
                bail!(
                    "timed out after {timeout:?} reading {topic}: {total} records so far, \
                     partitions at end: {at_eof:?}, errors: {errors:?}"
                );
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(m)) => {
                    let p = m.partition();
                    at_eof.insert(p, false);
                    out.entry(p).or_default().push(Rec::from_message(&m));
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_eof.insert(p, true);
                }
                Some(Err(e)) if errors.len() < 20 => errors.push(e.to_string()),
                Some(Err(_)) => {}
            }
        }
        Ok(out)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!(
                "--- sluice log tail ({}) ---\n{}\n--- end of sluice log ---",
                self.log_path().display(),
                self.log_tail(200)
            );
        }
    }
}

/// An owned, comparable copy of a consumed (or expected) record.
#[derive(Clone, PartialEq, Eq)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Timestamp,
}

impl Rec {
    pub fn from_message<M: Message>(m: &M) -> Rec {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Rec {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: m.timestamp(),
        }
    }
}

/// Short human-readable rendering of possibly large byte fields.
fn short(b: &Option<Vec<u8>>) -> String {
    match b {
        None => "null".to_string(),
        Some(v) if v.len() <= 32 => format!("{:?}", String::from_utf8_lossy(v)),
        Some(v) => format!(
            "{} bytes starting {:?}",
            v.len(),
            String::from_utf8_lossy(&v[..32])
        ),
    }
}

impl std::fmt::Debug for Rec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", short(v)))
            .collect();
        write!(
            f,
            "Rec {{ p{} @{} key={} value={} headers=[{}] ts={:?} }}",
            self.partition,
            self.offset,
            short(&self.key),
            short(&self.value),
            headers.join(", "),
            self.timestamp
        )
    }
}

/// One delivery report.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The id passed as delivery opaque when sending.
    pub id: usize,
    pub partition: i32,
    pub offset: i64,
    pub error: Option<KafkaError>,
}

/// Producer context that records every delivery report.
///
/// The delivery opaque is a caller-chosen `usize` id.
#[derive(Default)]
pub struct DeliveryLog {
    reports: Mutex<Vec<Delivery>>,
    acked: AtomicU64,
    failed: AtomicU64,
}

impl DeliveryLog {
    /// Number of successful deliveries so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Number of failed deliveries so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Removes and returns all delivery reports collected so far.
    pub fn take(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.reports.lock().unwrap())
    }
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let d = match result {
            Ok(m) => {
                self.acked.fetch_add(1, Ordering::SeqCst);
                Delivery {
                    id,
                    partition: m.partition(),
                    offset: m.offset(),
                    error: None,
                }
            }
            Err((e, m)) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                Delivery {
                    id,
                    partition: m.partition(),
                    offset: m.offset(),
                    error: Some(e.clone()),
                }
            }
        };
        self.reports.lock().unwrap().push(d);
    }
}

/// Drives a future to completion on a private runtime, failing after `timeout`.
pub fn block_on<F: Future>(fut: F, timeout: Duration) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("build runtime")?;
    rt.block_on(async { tokio::time::timeout(timeout, fut).await })
        .map_err(|_| anyhow!("operation timed out after {timeout:?}"))
}

/// Runs a command, feeding `stdin`, and kills it if it runs longer than
/// `timeout`.
pub fn run_with_timeout(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {cmd:?}"))?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let out_reader = spawn_reader(child.stdout.take());
    let err_reader = spawn_reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            bail!(
                "{cmd:?} timed out after {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

fn spawn_reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = vec![];
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs `kcat` with the given arguments.
pub fn kcat(args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> anyhow::Result<Output> {
    run_with_timeout(Command::new("kcat").args(args), stdin, timeout)
}

/// The Python interpreter named by `SLUICE_TEST_PYTHON`, if set.
///
/// It must have `kafka-python` and `confluent-kafka` installed.
pub fn test_python() -> Option<PathBuf> {
    std::env::var_os("SLUICE_TEST_PYTHON").map(PathBuf::from)
}

/// Runs a Python snippet with `SLUICE_TEST_PYTHON`, passing `args` as
/// `sys.argv[1:]`. Returns `None` (after saying so on stderr) when the
/// variable is not set.
pub fn run_python(script: &str, args: &[&str], timeout: Duration) -> Option<Output> {
    let Some(python) = test_python() else {
        eprintln!("SKIPPED: SLUICE_TEST_PYTHON is not set, not running the Python client check");
        return None;
    };
    let out = run_with_timeout(
        Command::new(&python).arg("-c").arg(script).args(args),
        None,
        timeout,
    )
    .unwrap_or_else(|e| panic!("running {}: {e:#}", python.display()));
    Some(out)
}

/// Panics with both output streams unless the process succeeded.
pub fn expect_success(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "{what} failed with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970")
        .as_millis() as i64
}

/// A process-wide unique suffix for names.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Small deterministic pseudo-random generator (SplitMix64).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    /// Random bytes over the full byte range.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// Text-like bytes drawn from a small alphabet, so they compress.
    pub fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&[u8]; 8] = [
            b"sluice ",
            b"kafka ",
            b"record ",
            b"batch ",
            b"offset ",
            b"topic ",
            b"{\"k\":1} ",
            b"\xc3\xa9t\xc3\xa9 ",
        ];
        let mut v = Vec::with_capacity(len + 16);
        while v.len() < len {
            v.extend_from_slice(WORDS[(self.next_u64() % 8) as usize]);
        }
        v.truncate(len);
        v
    }
}
