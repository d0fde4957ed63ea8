//! Consumer groups with the classic protocol: partition assignment and
//! rebalances through librdkafka (eager and cooperative), committed offsets
//! across consumer and broker restarts, static membership, and the
//! coordinator's answers to invalid group requests sent on raw connections.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};
use sluice_tests::{Broker, OP_TIMEOUT, Rec};

use crate::common::{Dec, assert_all_acked, produce_all};

/// Broker flags for group tests: a short initial rebalance delay instead of
/// Kafka's default of three seconds.
pub const GROUP_BROKER_ARGS: &[&str] = &["--group-initial-rebalance-delay-ms", "200"];

/// How long a group may take to settle after a membership change.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(40);

/// How long consumers may take to receive records that are already written.
pub const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);

pub fn start_broker() -> Broker {
    Broker::start_with(GROUP_BROKER_ARGS)
}

// ---------------------------------------------------------------------------
// Group members: one librdkafka consumer per thread.
// ---------------------------------------------------------------------------

/// A rebalance callback as the member saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
    Failed(String),
}

#[derive(Default)]
struct Seen {
    /// Partitions assigned after the latest rebalance callback.
    assignment: BTreeSet<i32>,
    events: Vec<Event>,
    records: Vec<Rec>,
    errors: Vec<String>,
}

struct Tracker {
    seen: Arc<Mutex<Seen>>,
}

impl ClientContext for Tracker {}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    v.sort_unstable();
    v
}

impl ConsumerContext for Tracker {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let now = consumer
            .assignment()
            .map(|tpl| partitions_of(&tpl))
            .unwrap_or_default();
        let mut seen = self.seen.lock().unwrap();
        let event = match rebalance {
            Rebalance::Assign(tpl) => Event::Assigned(partitions_of(tpl)),
            Rebalance::Revoke(tpl) => Event::Revoked(partitions_of(tpl)),
            Rebalance::Error(e) => Event::Failed(e.to_string()),
        };
        seen.events.push(event);
        seen.assignment = now.into_iter().collect();
    }
}

enum Cmd {
    /// Synchronous commit of the positions of everything consumed so far.
    CommitConsumed(mpsc::Sender<KafkaResult<()>>),
    /// Synchronous commit of explicit (partition, offset) pairs.
    Commit(Vec<(i32, i64)>, mpsc::Sender<KafkaResult<()>>),
    /// Stop polling for this long (an application stuck in its processing).
    Stall(Duration),
}

/// A subscribed librdkafka consumer polled continuously by its own thread,
/// which records rebalance callbacks and consumed records. Dropping or
/// closing it closes the consumer (a dynamic member leaves the group; a
/// static member, as in Kafka, does not).
pub struct Member {
    pub name: String,
    topic: String,
    seen: Arc<Mutex<Seen>>,
    cmds: mpsc::Sender<Cmd>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Consumer settings shared by the group tests: manual commits, short
/// session and heartbeat intervals, and a rebalance timeout
/// (`max.poll.interval.ms`) well below the test timeouts.
const MEMBER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("auto.offset.reset", "earliest"),
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("max.poll.interval.ms", "20000"),
    ("enable.partition.eof", "false"),
];

impl Member {
    /// Starts a member of `group` subscribed to `topic`, with `client.id` set
    /// to `name` and `extra` settings on top of [`MEMBER_DEFAULTS`].
    pub fn start(
        broker: &Broker,
        group: &str,
        topic: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Member {
        Member::start_with_config(broker.client_config(), group, topic, name, extra)
    }

    /// Like [`Member::start`] with a client configuration of the caller's
    /// (for example one pointing at a gateway).
    pub fn start_with_config(
        mut cfg: ClientConfig,
        group: &str,
        topic: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Member {
        cfg.set("group.id", group).set("client.id", name);
        for (k, v) in MEMBER_DEFAULTS.iter().chain(extra) {
            cfg.set(*k, *v);
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (cmds, rx) = mpsc::channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let thread = {
            let seen = seen.clone();
            let stop = stop.clone();
            let topic = topic.to_string();
            thread::Builder::new()
                .name(format!("member-{name}"))
                .spawn(move || {
                    let consumer: BaseConsumer<Tracker> =
                        match cfg.create_with_context(Tracker { seen: seen.clone() }) {
                            Ok(c) => c,
                            Err(e) => {
                                let _ = ready_tx.send(Err(format!("create consumer: {e}")));
                                return;
                            }
                        };
                    if let Err(e) = consumer.subscribe(&[&topic]) {
                        let _ = ready_tx.send(Err(format!("subscribe: {e}")));
                        return;
                    }
                    let _ = ready_tx.send(Ok(()));
                    member_loop(&consumer, &topic, &seen, &rx, &stop);
                })
                .expect("spawn member thread")
        };
        match ready_rx.recv_timeout(OP_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("member {name}: {e}"),
            Err(e) => panic!("member {name} did not start: {e}"),
        }
        Member {
            name: name.to_string(),
            topic: topic.to_string(),
            seen,
            cmds,
            stop,
            thread: Some(thread),
        }
    }

    /// The partitions this member owns according to its rebalance callbacks.
    pub fn assignment(&self) -> BTreeSet<i32> {
        self.seen.lock().unwrap().assignment.clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.seen.lock().unwrap().events.clone()
    }

    pub fn records(&self) -> Vec<Rec> {
        self.seen.lock().unwrap().records.clone()
    }

    pub fn errors(&self) -> Vec<String> {
        self.seen.lock().unwrap().errors.clone()
    }

    fn request(&self, make: impl FnOnce(mpsc::Sender<KafkaResult<()>>) -> Cmd) -> KafkaResult<()> {
        let (tx, rx) = mpsc::channel();
        self.cmds
            .send(make(tx))
            .unwrap_or_else(|_| panic!("member {} has stopped", self.name));
        rx.recv_timeout(OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("member {}: commit did not finish: {e}", self.name))
    }

    /// Synchronously commits the position after every record consumed so far.
    pub fn commit_consumed(&self) {
        if let Err(e) = self.request(Cmd::CommitConsumed) {
            panic!("member {}: synchronous commit failed: {e}", self.name);
        }
    }

    /// Synchronously commits explicit offsets of this member's topic.
    pub fn commit(&self, offsets: &[(i32, i64)]) {
        let offsets = offsets.to_vec();
        if let Err(e) = self.request(|tx| Cmd::Commit(offsets, tx)) {
            panic!("member {}: synchronous commit failed: {e}", self.name);
        }
    }

    /// Makes the member stop polling for `d` (it goes on by itself).
    pub fn stall(&self, d: Duration) {
        self.cmds
            .send(Cmd::Stall(d))
            .unwrap_or_else(|_| panic!("member {} has stopped", self.name));
    }

    /// Closes the consumer and waits for its thread.
    pub fn close(mut self) {
        if !self.shutdown() {
            panic!("member {} did not close within {OP_TIMEOUT:?}", self.name);
        }
    }

    fn shutdown(&mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let Some(t) = self.thread.take() else {
            return true;
        };
        let deadline = Instant::now() + OP_TIMEOUT;
        while !t.is_finished() {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if t.join().is_err() && !thread::panicking() {
            panic!("member {} thread panicked", self.name);
        }
        true
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn member_loop(
    consumer: &BaseConsumer<Tracker>,
    topic: &str,
    seen: &Mutex<Seen>,
    cmds: &mpsc::Receiver<Cmd>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        while let Ok(cmd) = cmds.try_recv() {
            match cmd {
                Cmd::CommitConsumed(reply) => {
                    let _ = reply.send(consumer.commit_consumer_state(CommitMode::Sync));
                }
                Cmd::Commit(offsets, reply) => {
                    let mut tpl = TopicPartitionList::new();
                    let mut res = Ok(());
                    for (p, o) in offsets {
                        if let Err(e) = tpl.add_partition_offset(topic, p, Offset::Offset(o)) {
                            res = Err(e);
                        }
                    }
                    let res = res.and_then(|()| consumer.commit(&tpl, CommitMode::Sync));
                    let _ = reply.send(res);
                }
                Cmd::Stall(d) => thread::sleep(d),
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => seen.lock().unwrap().records.push(Rec::from_message(&m)),
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => seen.lock().unwrap().errors.push(e.to_string()),
        }
    }
}

/// Polls `check` until it succeeds; on timeout panics with its last complaint.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) if Instant::now() > deadline => {
                panic!("{what}: not reached within {timeout:?}: {why}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Checks that the members' own assignments are disjoint, cover partitions
/// `0..partitions` and differ in size by at most one, and that the broker
/// describes a Stable group of exactly these members with the same
/// assignments.
fn check_balanced(
    broker: &Broker,
    group: &str,
    partitions: i32,
    members: &[&Member],
) -> Result<Vec<BTreeSet<i32>>, String> {
    let sets: Vec<BTreeSet<i32>> = members.iter().map(|m| m.assignment()).collect();
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let view = || format!("members {names:?} own {sets:?}");
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    if total != union.len() {
        return Err(format!("assignments overlap: {}", view()));
    }
    if union != (0..partitions).collect() {
        return Err(format!(
            "not all {partitions} partitions assigned: {}",
            view()
        ));
    }
    let lo = partitions as usize / members.len();
    let hi = lo + usize::from(!(partitions as usize).is_multiple_of(members.len()));
    if sets.iter().any(|s| s.len() < lo || s.len() > hi) {
        return Err(format!("unbalanced (want {lo}..={hi} each): {}", view()));
    }
    let g = describe_group(broker, group);
    if g.error != NONE {
        return Err(format!("DescribeGroups error {}", g.error));
    }
    if g.state != "Stable" || g.members.len() != members.len() {
        return Err(format!(
            "broker describes {} with {} members; {}",
            g.state,
            g.members.len(),
            view()
        ));
    }
    for (m, set) in members.iter().zip(&sets) {
        let described: Vec<&MemberView> =
            g.members.iter().filter(|d| d.client_id == m.name).collect();
        if described.len() != 1 {
            return Err(format!(
                "broker describes {} members with client id {}: {:?}",
                described.len(),
                m.name,
                g.members
            ));
        }
        let on_broker = described[0]
            .assignment
            .get(&m.topic)
            .cloned()
            .unwrap_or_default();
        if &on_broker != set {
            return Err(format!(
                "broker has {} assigned {on_broker:?}, the member itself {set:?}",
                m.name
            ));
        }
    }
    Ok(sets)
}

/// Waits for [`check_balanced`] to hold.
pub fn wait_balanced(
    broker: &Broker,
    group: &str,
    partitions: i32,
    members: &[&Member],
) -> Vec<BTreeSet<i32>> {
    wait_until(
        &format!("balanced assignment of group {group}"),
        SETTLE_TIMEOUT,
        || check_balanced(broker, group, partitions, members),
    )
}

fn record(partition: i32, key: String) -> Rec {
    Rec {
        partition,
        offset: -1,
        value: Some(format!("value of {key}").into_bytes()),
        key: Some(key.into_bytes()),
        headers: vec![],
        timestamp: Timestamp::CreateTime(sluice_tests::now_ms()),
    }
}

/// Produces `per_partition` records to each partition with keys
/// `{tag}-{partition}-{n}` and checks they were all acknowledged.
pub fn produce_tagged(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    tag: &str,
    per_partition: usize,
) {
    let recs: Vec<Rec> = (0..per_partition)
        .flat_map(|n| (0..partitions).map(move |p| (p, n)))
        .map(|(p, n)| record(p, format!("{tag}-{p}-{n}")))
        .collect();
    let producer = broker.producer(&[("acks", "all"), ("linger.ms", "5")]);
    let reports = produce_all(&producer, topic, &recs, Duration::from_secs(60));
    assert_all_acked(&reports, recs.len());
}

fn key_str(r: &Rec) -> String {
    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned()
}

/// Produces one marker record per partition (key `{tag}-{p}-0`) and waits
/// until each one has been consumed by the member owning its partition and
/// by nobody else.
fn markers_reach_owners(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    tag: &str,
    members: &[&Member],
) {
    produce_tagged(broker, topic, partitions, tag, 1);
    wait_until(
        &format!("markers {tag} consumed by the partition owners"),
        CONSUME_TIMEOUT,
        || {
            for p in 0..partitions {
                let key = format!("{tag}-{p}-0");
                let got: Vec<&str> = members
                    .iter()
                    .filter(|m| m.records().iter().any(|r| key_str(r) == key))
                    .map(|m| m.name.as_str())
                    .collect();
                let owner: Vec<&str> = members
                    .iter()
                    .filter(|m| m.assignment().contains(&p))
                    .map(|m| m.name.as_str())
                    .collect();
                if got != owner {
                    return Err(format!(
                        "partition {p}: marker consumed by {got:?}, owned by {owner:?}"
                    ));
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------
// Raw group requests.
// ---------------------------------------------------------------------------

pub const NONE: i16 = 0;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const MEMBER_ID_REQUIRED: i16 = 79;

const JOIN_GROUP: i16 = 11;
const HEARTBEAT: i16 = 12;
const LEAVE_GROUP: i16 = 13;
const SYNC_GROUP: i16 = 14;
const DESCRIBE_GROUPS: i16 = 15;
const OFFSET_COMMIT: i16 = 8;
const OFFSET_FETCH: i16 = 9;
const DELETE_GROUPS: i16 = 42;

/// Big-endian writer for non-flexible request bodies.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn i8(&mut self, v: i8) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.i16(s.len() as i16);
        self.0.extend(s.as_bytes());
        self
    }
    fn nstr(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.str(s),
            None => self.i16(-1),
        }
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.i32(b.len() as i32);
        self.0.extend(b);
        self
    }
    fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// One Kafka connection speaking hand-encoded requests (request header v1,
/// response header v0).
pub struct Raw {
    stream: TcpStream,
    next_correlation: i32,
}

impl Raw {
    pub fn connect(broker: &Broker) -> Raw {
        let stream = TcpStream::connect_timeout(&broker.kafka_addr(), Duration::from_secs(5))
            .expect("connect to the Kafka port");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            next_correlation: 1,
        }
    }

    /// Sends a request without waiting; returns its correlation id.
    fn send(&mut self, api_key: i16, version: i16, body: &[u8]) -> i32 {
        let corr = self.next_correlation;
        self.next_correlation += 1;
        let mut payload = Enc::default();
        payload
            .i16(api_key)
            .i16(version)
            .i32(corr)
            .nstr(Some("sluice-group-test"));
        let mut payload = payload.done();
        payload.extend(body);
        let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
        frame.extend(payload);
        self.stream.write_all(&frame).expect("send request");
        corr
    }

    /// Reads the response to `corr` and returns its body.
    fn recv(&mut self, corr: i32, timeout: Duration) -> Vec<u8> {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .unwrap_or_else(|e| panic!("no response to request {corr} within {timeout:?}: {e}"));
        let len = i32::from_be_bytes(len);
        assert!(
            (4..16 << 20).contains(&len),
            "implausible response length {len}"
        );
        let mut buf = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("incomplete response to request {corr}: {e}"));
        let got = i32::from_be_bytes(buf[..4].try_into().unwrap());
        assert_eq!(got, corr, "response to another request");
        buf.split_off(4)
    }

    fn call(&mut self, api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
        let corr = self.send(api_key, version, body);
        self.recv(corr, Duration::from_secs(20))
    }
}

/// ConsumerProtocolSubscription v0.
pub fn subscription(topics: &[&str]) -> Vec<u8> {
    let mut e = Enc::default();
    e.i16(0).i32(topics.len() as i32);
    for t in topics {
        e.str(t);
    }
    e.i32(-1).done()
}

/// ConsumerProtocolAssignment v0 for one topic.
pub fn assignment(topic: &str, partitions: &[i32]) -> Vec<u8> {
    let mut e = Enc::default();
    e.i16(0).i32(1).str(topic).i32(partitions.len() as i32);
    for p in partitions {
        e.i32(*p);
    }
    e.i32(-1).done()
}

/// Topic -> partitions of a ConsumerProtocolAssignment (any version; the
/// fields after the partitions are ignored).
pub fn parse_assignment(b: &[u8]) -> BTreeMap<String, BTreeSet<i32>> {
    if b.is_empty() {
        return BTreeMap::new();
    }
    let mut d = Dec(b);
    d.i16();
    d.array(|d| {
        let t = d.str();
        let ps = d.array(|d| d.i32());
        (t, ps.into_iter().collect())
    })
    .into_iter()
    .collect()
}

#[derive(Debug)]
pub struct JoinReply {
    pub error: i16,
    pub generation: i32,
    /// Null on the wire is `None` (only legal from v7; see
    /// `groups_join_error_responses_follow_the_v5_schema`).
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
}

/// A JoinGroup v5 request.
pub struct Join<'a> {
    pub group: &'a str,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub session_timeout_ms: i32,
    pub protocol_type: &'a str,
    pub protocols: Vec<(&'a str, Vec<u8>)>,
}

impl<'a> Join<'a> {
    /// A consumer joining with the range assignor and the given subscription.
    pub fn consumer(group: &'a str, member_id: &'a str, topic: &str) -> Join<'a> {
        Join {
            group,
            member_id,
            instance_id: None,
            session_timeout_ms: 10_000,
            protocol_type: "consumer",
            protocols: vec![("range", subscription(&[topic]))],
        }
    }

    fn body(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.str(self.group)
            .i32(self.session_timeout_ms)
            .i32(self.session_timeout_ms)
            .str(self.member_id)
            .nstr(self.instance_id)
            .str(self.protocol_type)
            .i32(self.protocols.len() as i32);
        for (name, meta) in &self.protocols {
            e.str(name).bytes(meta);
        }
        e.done()
    }

    /// Sends the request without waiting for the answer.
    pub fn send(&self, raw: &mut Raw) -> i32 {
        raw.send(JOIN_GROUP, 5, &self.body())
    }

    pub fn call(&self, raw: &mut Raw) -> JoinReply {
        let corr = self.send(raw);
        join_reply(raw, corr)
    }
}

pub fn join_reply(raw: &mut Raw, corr: i32) -> JoinReply {
    let b = raw.recv(corr, Duration::from_secs(30));
    let mut d = Dec(&b);
    d.i32(); // throttle
    let r = JoinReply {
        error: d.i16(),
        generation: d.i32(),
        protocol: d.nstr(),
        leader: d.str(),
        member_id: d.str(),
        members: d.array(|d| (d.str(), d.nstr(), d.bytes())),
    };
    d.end("JoinGroup v5");
    r
}

/// JoinGroup v5 for a new member: the first attempt must be answered with
/// MEMBER_ID_REQUIRED and a member id (KIP-394); returns that id.
pub fn member_id_for(raw: &mut Raw, group: &str, topic: &str) -> String {
    let r = Join::consumer(group, "", topic).call(raw);
    assert_eq!(
        r.error, MEMBER_ID_REQUIRED,
        "a JoinGroup v5 without member id must be answered with MEMBER_ID_REQUIRED: {r:?}"
    );
    assert!(
        !r.member_id.is_empty(),
        "MEMBER_ID_REQUIRED without a member id"
    );
    r.member_id
}

fn sync_body(
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    let mut e = Enc::default();
    e.str(group)
        .i32(generation)
        .str(member)
        .nstr(None)
        .i32(assignments.len() as i32);
    for (m, a) in assignments {
        e.str(m).bytes(a);
    }
    e.done()
}

/// Sends a SyncGroup v3 without waiting.
pub fn send_sync(
    raw: &mut Raw,
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, Vec<u8>)],
) -> i32 {
    raw.send(
        SYNC_GROUP,
        3,
        &sync_body(group, generation, member, assignments),
    )
}

/// (error, assignment) of a SyncGroup v3 response.
pub fn sync_reply(raw: &mut Raw, corr: i32) -> (i16, Vec<u8>) {
    let b = raw.recv(corr, Duration::from_secs(30));
    let mut d = Dec(&b);
    d.i32();
    let r = (d.i16(), d.bytes());
    d.end("SyncGroup v3");
    r
}

/// Heartbeat v3; returns the error code.
pub fn heartbeat(raw: &mut Raw, group: &str, generation: i32, member: &str) -> i16 {
    let mut e = Enc::default();
    e.str(group).i32(generation).str(member).nstr(None);
    let b = raw.call(HEARTBEAT, 3, &e.done());
    let mut d = Dec(&b);
    d.i32();
    let err = d.i16();
    d.end("Heartbeat v3");
    err
}

/// OffsetCommit v7 for one topic; returns (partition, error) pairs.
pub fn offset_commit(
    raw: &mut Raw,
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<(i32, i16)> {
    let mut e = Enc::default();
    e.str(group)
        .i32(generation)
        .str(member)
        .nstr(None)
        .i32(1)
        .str(topic)
        .i32(offsets.len() as i32);
    for (p, o) in offsets {
        e.i32(*p).i64(*o).i32(-1).nstr(Some(""));
    }
    let b = raw.call(OFFSET_COMMIT, 7, &e.done());
    let mut d = Dec(&b);
    d.i32();
    let topics = d.array(|d| {
        let name = d.str();
        (name, d.array(|d| (d.i32(), d.i16())))
    });
    d.end("OffsetCommit v7");
    assert_eq!(topics.len(), 1, "one topic in the OffsetCommit response");
    assert_eq!(topics[0].0, topic);
    topics.into_iter().next().unwrap().1
}

/// OffsetFetch v5 for one topic; returns (top-level error, [(partition,
/// offset, error)]).
pub fn offset_fetch(
    raw: &mut Raw,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> (i16, Vec<(i32, i64, i16)>) {
    let mut e = Enc::default();
    e.str(group).i32(1).str(topic).i32(partitions.len() as i32);
    for p in partitions {
        e.i32(*p);
    }
    let b = raw.call(OFFSET_FETCH, 5, &e.done());
    let mut d = Dec(&b);
    d.i32();
    let topics = d.array(|d| {
        let name = d.str();
        let parts = d.array(|d| {
            let p = d.i32();
            let off = d.i64();
            d.i32(); // leader epoch
            d.nstr(); // metadata
            (p, off, d.i16())
        });
        (name, parts)
    });
    let err = d.i16();
    d.end("OffsetFetch v5");
    let parts = topics
        .into_iter()
        .filter(|(t, _)| t == topic)
        .flat_map(|(_, ps)| ps)
        .collect();
    (err, parts)
}

/// DeleteGroups v1; returns (group, error) pairs.
pub fn delete_groups(raw: &mut Raw, groups: &[&str]) -> Vec<(String, i16)> {
    let mut e = Enc::default();
    e.i32(groups.len() as i32);
    for g in groups {
        e.str(g);
    }
    let b = raw.call(DELETE_GROUPS, 1, &e.done());
    let mut d = Dec(&b);
    d.i32();
    let r = d.array(|d| (d.str(), d.i16()));
    d.end("DeleteGroups v1");
    r
}

/// LeaveGroup v3 for the given members; returns (top-level error, per-member errors).
pub fn leave_group(raw: &mut Raw, group: &str, members: &[&str]) -> (i16, Vec<i16>) {
    let mut e = Enc::default();
    e.str(group).i32(members.len() as i32);
    for m in members {
        e.str(m).nstr(None);
    }
    let b = raw.call(LEAVE_GROUP, 3, &e.done());
    let mut d = Dec(&b);
    d.i32();
    let err = d.i16();
    let per = d.array(|d| {
        d.str();
        d.nstr();
        d.i16()
    });
    d.end("LeaveGroup v3");
    (err, per)
}

#[derive(Debug)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub assignment: BTreeMap<String, BTreeSet<i32>>,
}

#[derive(Debug)]
pub struct GroupView {
    pub error: i16,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

/// The group as DescribeGroups v4 reports it.
pub fn describe_group(broker: &Broker, group: &str) -> GroupView {
    let mut raw = Raw::connect(broker);
    let mut e = Enc::default();
    e.i32(1).str(group).i8(0);
    let b = raw.call(DESCRIBE_GROUPS, 4, &e.done());
    let mut d = Dec(&b);
    d.i32();
    let mut groups = d.array(|d| {
        let error = d.i16();
        let id = d.str();
        let state = d.str();
        let protocol_type = d.str();
        let protocol = d.str();
        let members = d.array(|d| {
            let member_id = d.str();
            let instance_id = d.nstr();
            let client_id = d.str();
            let client_host = d.str();
            d.bytes(); // subscription
            let assignment = parse_assignment(&d.bytes());
            MemberView {
                member_id,
                instance_id,
                client_id,
                client_host,
                assignment,
            }
        });
        d.i32(); // authorized operations
        (
            id,
            GroupView {
                error,
                state,
                protocol_type,
                protocol,
                members,
            },
        )
    });
    d.end("DescribeGroups v4");
    assert_eq!(groups.len(), 1, "one group described");
    let (id, view) = groups.pop().unwrap();
    assert_eq!(id, group);
    view
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

/// Two members split 8 partitions, a third joins, one leaves; after every
/// change the partitions are spread evenly and disjointly over the current
/// members (as they and the broker see it), and new records reach the owner.
fn rebalance_scenario(strategy: &str, cooperative: bool) {
    let broker = start_broker();
    let topic = format!("rb-{strategy}");
    let group = format!("rb-group-{strategy}");
    const PARTS: i32 = 8;
    broker.create_topic(&topic, PARTS, &[]);
    let cfg = [("partition.assignment.strategy", strategy)];

    let a = Member::start(&broker, &group, &topic, "member-a", &cfg);
    let b = Member::start(&broker, &group, &topic, "member-b", &cfg);
    let two = wait_balanced(&broker, &group, PARTS, &[&a, &b]);
    assert_eq!(two.iter().map(BTreeSet::len).collect::<Vec<_>>(), [4, 4]);
    let g = describe_group(&broker, &group);
    assert_eq!(g.protocol_type, "consumer");
    assert_eq!(g.protocol, strategy, "the protocol all members offered");
    markers_reach_owners(&broker, &topic, PARTS, "two", &[&a, &b]);

    // A third member joins.
    let events_before = [a.events().len(), b.events().len()];
    let c = Member::start(&broker, &group, &topic, "member-c", &cfg);
    let three = wait_balanced(&broker, &group, PARTS, &[&a, &b, &c]);
    let mut sizes: Vec<usize> = three.iter().map(BTreeSet::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 3, 3]);
    for (i, m) in [&a, &b].into_iter().enumerate() {
        let revoked: Vec<i32> = m.events()[events_before[i]..]
            .iter()
            .filter_map(|e| match e {
                Event::Revoked(ps) => Some(ps.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        if cooperative {
            // Incremental: only the partitions that moved to the new member
            // are revoked; the rest stay assigned throughout.
            let moved: Vec<i32> = two[i].difference(&three[i]).copied().collect();
            let mut revoked = revoked.clone();
            revoked.sort_unstable();
            assert_eq!(
                revoked, moved,
                "{}: cooperative rebalance must revoke exactly the moved partitions",
                m.name
            );
            assert!(
                three[i].is_subset(&two[i]),
                "{}: kept {:?}, had {:?}",
                m.name,
                three[i],
                two[i]
            );
        } else {
            // Eager: everything is revoked before the new assignment.
            let all: Vec<i32> = two[i].iter().copied().collect();
            assert!(
                m.events()[events_before[i]..].contains(&Event::Revoked(all.clone())),
                "{}: an eager rebalance must revoke the whole assignment {all:?}; \
                 events {:?}",
                m.name,
                &m.events()[events_before[i]..]
            );
        }
    }
    markers_reach_owners(&broker, &topic, PARTS, "three", &[&a, &b, &c]);

    // Member b leaves; its partitions move to a and c.
    let b_had = three[1].clone();
    b.close();
    let after = wait_balanced(&broker, &group, PARTS, &[&a, &c]);
    assert_eq!(after.iter().map(BTreeSet::len).collect::<Vec<_>>(), [4, 4]);
    for p in &b_had {
        assert!(
            after[0].contains(p) || after[1].contains(p),
            "partition {p} of the departed member was not reassigned: {after:?}"
        );
    }
    if cooperative {
        assert!(three[0].is_subset(&after[0]), "a kept its partitions");
        assert!(three[2].is_subset(&after[1]), "c kept its partitions");
    }
    let g = describe_group(&broker, &group);
    assert!(
        g.members.iter().all(|m| m.client_id != "member-b"),
        "the member that left is still described: {g:?}"
    );
    markers_reach_owners(&broker, &topic, PARTS, "after-leave", &[&a, &c]);

    for m in [&a, &c] {
        assert!(
            !m.events().iter().any(|e| matches!(e, Event::Failed(_))),
            "{}: rebalance errors: {:?}",
            m.name,
            m.events()
        );
    }
    a.close();
    c.close();
    let g = describe_group(&broker, &group);
    assert_eq!(g.state, "Empty", "a group whose members all left: {g:?}");
    assert!(g.members.is_empty());
}

#[test]
fn groups_eager_range_rebalance() {
    rebalance_scenario("range", false);
}

/// A member that stops polling for longer than `max.poll.interval.ms` is
/// out of the group (librdkafka leaves it, as Kafka's clients do): the
/// other member takes over its partitions and the group settles, then the
/// stalled member rejoins when it polls again and gets its share back.
#[test]
fn groups_cooperative_sticky_member_exceeding_max_poll_interval() {
    let broker = start_broker();
    let topic = "rb-max-poll";
    let group = "rb-max-poll-group";
    const PARTS: i32 = 4;
    broker.create_topic(topic, PARTS, &[]);
    let cfg = [
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("max.poll.interval.ms", "7000"),
    ];
    let a = Member::start(&broker, group, topic, "member-a", &cfg);
    let b = Member::start(&broker, group, topic, "member-b", &cfg);
    wait_balanced(&broker, group, PARTS, &[&a, &b]);
    a.stall(Duration::from_secs(12));
    // While a is stuck, b alone holds every partition and reads them.
    wait_until("b owns every partition", SETTLE_TIMEOUT, || {
        let owned = b.assignment();
        let g = describe_group(&broker, group);
        if owned.len() == PARTS as usize && g.state == "Stable" && g.members.len() == 1 {
            Ok(())
        } else {
            Err(format!(
                "b owns {owned:?}; group {} with {} members",
                g.state,
                g.members.len()
            ))
        }
    });
    markers_reach_owners(&broker, topic, PARTS, "alone", &[&b]);
    // a polls again, rejoins, and the two share the partitions again.
    wait_balanced(&broker, group, PARTS, &[&a, &b]);
    markers_reach_owners(&broker, topic, PARTS, "again", &[&a, &b]);
}

#[test]
fn groups_cooperative_sticky_rebalance() {
    rebalance_scenario("cooperative-sticky", true);
}

/// (partition, offset) -> key of every record a member consumed.
fn consumed(members: &[&Member]) -> Vec<(i32, i64, String)> {
    let mut v: Vec<(i32, i64, String)> = members
        .iter()
        .flat_map(|m| m.records())
        .map(|r| (r.partition, r.offset, key_str(&r)))
        .collect();
    v.sort();
    v
}

/// Waits until `members` together consumed `expected` (partition, offset)
/// pairs, then a little longer, and asserts they consumed exactly those, once.
fn expect_consumed(members: &[&Member], expected: &BTreeMap<i32, std::ops::Range<i64>>) {
    let want: Vec<(i32, i64)> = expected
        .iter()
        .flat_map(|(p, r)| r.clone().map(move |o| (*p, o)))
        .collect();
    wait_until("consuming the expected records", CONSUME_TIMEOUT, || {
        let n = consumed(members).len();
        if n >= want.len() {
            Ok(())
        } else {
            Err(format!("{n} of {} records consumed", want.len()))
        }
    });
    // Anything extra (re-delivery) would arrive right behind.
    thread::sleep(Duration::from_millis(1500));
    let got: Vec<(i32, i64)> = consumed(members).iter().map(|(p, o, _)| (*p, *o)).collect();
    if got != want {
        let got_set: BTreeSet<_> = got.iter().collect();
        let want_set: BTreeSet<_> = want.iter().collect();
        let missing: Vec<_> = want_set.difference(&got_set).take(10).collect();
        let extra: Vec<_> = got_set.difference(&want_set).take(10).collect();
        let dups = got.len() - got_set.len();
        panic!(
            "consumed {} records, expected {}: missing {missing:?}, unexpected {extra:?}, \
             {dups} duplicates",
            got.len(),
            want.len()
        );
    }
    for m in members {
        // Connection errors while the broker restarts are expected.
        let errors: Vec<String> = m
            .errors()
            .into_iter()
            .filter(|e| !e.contains("BrokerTransportFailure") && !e.contains("AllBrokersDown"))
            .collect();
        assert!(errors.is_empty(), "{}: consumer errors {errors:?}", m.name);
    }
}

/// Committed offsets of `group` for partitions `0..partitions`, read with
/// OffsetFetch by librdkafka.
fn committed(broker: &Broker, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer = broker.consumer(&[("group.id", group)]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let res = consumer
        .committed_offsets(tpl, OP_TIMEOUT)
        .unwrap_or_else(|e| panic!("OffsetFetch for {group} failed: {e}"));
    (0..partitions)
        .map(|p| {
            let e = res.find_partition(topic, p).expect("partition in result");
            match e.offset() {
                Offset::Offset(o) => o,
                Offset::Invalid => -1,
                other => panic!("unexpected committed offset {other:?} for partition {p}"),
            }
        })
        .collect()
}

#[test]
fn groups_commit_and_resume_across_restarts() {
    let mut broker = start_broker();
    let topic = "resume";
    let group = "resumers";
    const PARTS: i32 = 4;
    broker.create_topic(topic, PARTS, &[]);
    let ranges = |from: &[i64], to: i64| -> BTreeMap<i32, std::ops::Range<i64>> {
        (0..PARTS).map(|p| (p, from[p as usize]..to)).collect()
    };

    // Two members split the topic before anything is written, so every
    // record is consumed exactly once.
    let a = Member::start(&broker, group, topic, "resume-a", &[]);
    let b = Member::start(&broker, group, topic, "resume-b", &[]);
    let sets = wait_balanced(&broker, group, PARTS, &[&a, &b]);
    produce_tagged(&broker, topic, PARTS, "first", 30);
    expect_consumed(&[&a, &b], &ranges(&[0; 4], 30));

    // a commits everything it consumed; b commits only the first 20 records
    // of its partitions, as if it had not processed the rest.
    a.commit_consumed();
    let b_parts: Vec<(i32, i64)> = sets[1].iter().map(|p| (*p, 20)).collect();
    b.commit(&b_parts);
    let mut want: Vec<i64> = vec![30; PARTS as usize];
    for (p, o) in &b_parts {
        want[*p as usize] = *o;
    }
    assert_eq!(committed(&broker, group, topic, PARTS), want);
    a.close();
    b.close();
    let g = describe_group(&broker, group);
    assert_eq!(g.state, "Empty", "{g:?}");
    assert_eq!(
        committed(&broker, group, topic, PARTS),
        want,
        "committed offsets must outlive the members"
    );

    // A new member resumes at the committed offsets: b's uncommitted tail is
    // delivered again, nothing committed is.
    produce_tagged(&broker, topic, PARTS, "second", 20);
    let c = Member::start(&broker, group, topic, "resume-c", &[]);
    expect_consumed(&[&c], &ranges(&want, 50));
    c.commit_consumed();
    c.close();
    assert_eq!(committed(&broker, group, topic, PARTS), vec![50; 4]);

    // Graceful restart: the group and its offsets are still there.
    broker.restart();
    assert_eq!(
        committed(&broker, group, topic, PARTS),
        vec![50; 4],
        "committed offsets after a restart"
    );
    let g = describe_group(&broker, group);
    assert_eq!(g.state, "Empty", "group after a restart: {g:?}");
    assert_eq!(g.protocol_type, "consumer", "group after a restart: {g:?}");
    produce_tagged(&broker, topic, PARTS, "third", 10);
    let d = Member::start(&broker, group, topic, "resume-d", &[]);
    expect_consumed(&[&d], &ranges(&[50; 4], 60));
    d.commit_consumed();
    assert_eq!(committed(&broker, group, topic, PARTS), vec![60; 4]);

    // SIGKILL with a live member: acknowledged commits survive, and so does
    // the member's place in the group (it keeps its partitions without a
    // rebalance, as after a coordinator failover in Kafka).
    let d_events = d.events();
    broker.kill9();
    broker.restart();
    assert_eq!(
        committed(&broker, group, topic, PARTS),
        vec![60; 4],
        "offsets committed before SIGKILL"
    );
    let g = describe_group(&broker, group);
    assert_eq!(
        g.state, "Stable",
        "group with a live member after SIGKILL: {g:?}"
    );
    assert_eq!(g.members.len(), 1, "{g:?}");
    assert_eq!(g.members[0].client_id, "resume-d");
    produce_tagged(&broker, topic, PARTS, "fourth", 10);
    expect_consumed(&[&d], &ranges(&[50; 4], 70));
    assert_eq!(
        d.events(),
        d_events,
        "the surviving member should not have been rebalanced"
    );
    // d goes away without committing: the next member starts over at 60.
    d.close();
    let e = Member::start(&broker, group, topic, "resume-e", &[]);
    expect_consumed(&[&e], &ranges(&[60; 4], 70));
    e.close();
}

/// A static member (`group.instance.id`) that restarts within its session
/// timeout gets its partitions back and the other member is not disturbed;
/// one that stays away loses its partitions once the session expires.
fn static_member_scenario(strategy: &str) {
    let broker = start_broker();
    let topic = "statics";
    let group = "static-group";
    const PARTS: i32 = 6;
    broker.create_topic(topic, PARTS, &[]);
    let cfg = |instance: &'static str| {
        [
            ("group.instance.id", instance),
            ("session.timeout.ms", "10000"),
            ("partition.assignment.strategy", strategy),
        ]
    };

    // A rolling start: a alone first, then b, so the group has been through
    // more than one generation before a restarts (with the cooperative
    // protocol a's subscription metadata then also lists the partitions it
    // owned, which the restarted instance no longer reports).
    let a = Member::start(&broker, group, topic, "static-a", &cfg("instance-a"));
    wait_balanced(&broker, group, PARTS, &[&a]);
    let b = Member::start(&broker, group, topic, "static-b", &cfg("instance-b"));
    let sets = wait_balanced(&broker, group, PARTS, &[&a, &b]);
    let before = describe_group(&broker, group);
    let instances: BTreeMap<String, Option<String>> = before
        .members
        .iter()
        .map(|m| (m.client_id.clone(), m.instance_id.clone()))
        .collect();
    assert_eq!(
        instances,
        BTreeMap::from([
            ("static-a".to_string(), Some("instance-a".to_string())),
            ("static-b".to_string(), Some("instance-b".to_string())),
        ]),
        "group.instance.id of the described members"
    );
    let old_a_id = before
        .members
        .iter()
        .find(|m| m.client_id == "static-a")
        .map(|m| m.member_id.clone())
        .unwrap();
    let b_events = b.events();

    // A static member closes without leaving: the group keeps its place.
    a.close();
    let g = describe_group(&broker, group);
    assert_eq!(
        (g.state.as_str(), g.members.len()),
        ("Stable", 2),
        "a static member that closed is kept until its session expires: {g:?}"
    );

    // It comes back within the session timeout and gets its partitions back.
    let a2 = Member::start(&broker, group, topic, "static-a", &cfg("instance-a"));
    let again = wait_until(
        "the restarted static member getting its partitions back",
        SETTLE_TIMEOUT,
        || check_balanced(&broker, group, PARTS, &[&a2, &b]),
    );
    assert_eq!(again, sets, "assignments after the static member's restart");
    let g = describe_group(&broker, group);
    let new_a = g
        .members
        .iter()
        .find(|m| m.client_id == "static-a")
        .unwrap();
    assert_eq!(new_a.instance_id.as_deref(), Some("instance-a"));
    // Kafka reports client hosts as "/ADDRESS".
    assert_eq!(new_a.client_host, "/127.0.0.1");
    assert_ne!(
        new_a.member_id, old_a_id,
        "the restarted static member gets a new member id"
    );
    assert_eq!(
        b.events(),
        b_events,
        "the other member must not go through a rebalance"
    );
    markers_reach_owners(&broker, topic, PARTS, "static", &[&a2, &b]);

    // Gone for good: after the session timeout its partitions move to b.
    a2.close();
    let t = Instant::now();
    wait_balanced(&broker, group, PARTS, &[&b]);
    assert!(
        t.elapsed() >= Duration::from_secs(5),
        "the departed static member's partitions moved after {:?}, well before its \
         10 s session timeout",
        t.elapsed()
    );
}

#[test]
fn groups_static_member_restart_range() {
    static_member_scenario("range");
}

#[test]
fn groups_static_member_restart_cooperative_sticky() {
    static_member_scenario("cooperative-sticky");
}

/// Collects mismatches so that one run reports every divergence.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.0
                .push(format!("{what}: got {got:?}, expected {want:?}"));
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

#[test]
fn groups_bad_requests_get_kafka_errors() {
    let broker = start_broker();
    let topic = "raw-groups";
    broker.create_topic(topic, 2, &[]);
    let group = "raw-group";
    let mut c1 = Raw::connect(&broker);
    let mut c2 = Raw::connect(&broker);
    let mut checks = Checks::default();

    // Member 1 forms the group alone and becomes leader of generation 1.
    let m1 = member_id_for(&mut c1, group, topic);
    let j = Join::consumer(group, &m1, topic).call(&mut c1);
    assert_eq!(j.error, NONE, "{j:?}");
    assert_eq!(
        (j.leader.as_str(), j.member_id.as_str()),
        (m1.as_str(), m1.as_str())
    );
    assert_eq!(j.protocol.as_deref(), Some("range"));
    let gen1 = j.generation;
    assert_eq!(j.members.len(), 1, "the leader gets every member: {j:?}");
    let corr = send_sync(
        &mut c1,
        group,
        gen1,
        &m1,
        &[(m1.as_str(), assignment(topic, &[0, 1]))],
    );
    let (err, got) = sync_reply(&mut c1, corr);
    assert_eq!(err, NONE);
    assert_eq!(parse_assignment(&got)[topic], BTreeSet::from([0, 1]));
    assert_eq!(heartbeat(&mut c1, group, gen1, &m1), NONE);
    assert_eq!(describe_group(&broker, group).state, "Stable");

    // Joins that cannot share the group's protocol.
    let mut bad = Join::consumer(group, "", topic);
    bad.protocol_type = "";
    checks.eq(
        "JoinGroup with an empty protocol type",
        bad.call(&mut c2).error,
        INCONSISTENT_GROUP_PROTOCOL,
    );
    bad.protocol_type = "connect";
    checks.eq(
        "JoinGroup with protocol type 'connect' into a 'consumer' group",
        bad.call(&mut c2).error,
        INCONSISTENT_GROUP_PROTOCOL,
    );
    let mut bad = Join::consumer(group, "", topic);
    bad.protocols = vec![("roundrobin", subscription(&[topic]))];
    checks.eq(
        "JoinGroup with no assignor in common with the group",
        bad.call(&mut c2).error,
        INCONSISTENT_GROUP_PROTOCOL,
    );
    let mut bad = Join::consumer(group, "", topic);
    bad.session_timeout_ms = 500;
    checks.eq(
        "JoinGroup with a 500 ms session timeout",
        bad.call(&mut c2).error,
        INVALID_SESSION_TIMEOUT,
    );
    assert_eq!(
        heartbeat(&mut c1, group, gen1, &m1),
        NONE,
        "refused joins must not disturb the group"
    );

    // Commits and heartbeats with the wrong identity.
    checks.eq(
        "OffsetCommit from an unknown member of an active group",
        offset_commit(&mut c1, group, gen1, "no-such-member", topic, &[(0, 1)]),
        vec![(0, UNKNOWN_MEMBER_ID)],
    );
    checks.eq(
        "OffsetCommit with a generation from the future",
        offset_commit(&mut c1, group, gen1 + 1, &m1, topic, &[(0, 1)]),
        vec![(0, ILLEGAL_GENERATION)],
    );
    checks.eq(
        "Heartbeat from an unknown member",
        heartbeat(&mut c1, group, gen1, "no-such-member"),
        UNKNOWN_MEMBER_ID,
    );
    checks.eq(
        "OffsetCommit by the current member and generation",
        offset_commit(&mut c1, group, gen1, &m1, topic, &[(0, 3), (1, 4)]),
        vec![(0, NONE), (1, NONE)],
    );

    // Member 2 joins: a rebalance starts and member 1 learns it from its
    // heartbeat. Member 2's JoinGroup is answered only when member 1 rejoins.
    let m2 = member_id_for(&mut c2, group, topic);
    let join2 = Join::consumer(group, &m2, topic).send(&mut c2);
    wait_until(
        "Heartbeat answering REBALANCE_IN_PROGRESS during a rebalance",
        Duration::from_secs(10),
        || match heartbeat(&mut c1, group, gen1, &m1) {
            REBALANCE_IN_PROGRESS => Ok(()),
            other => Err(format!("heartbeat answered {other}")),
        },
    );
    checks.eq(
        "group state while waiting for members to rejoin",
        describe_group(&broker, group).state.as_str(),
        "PreparingRebalance",
    );
    checks.eq(
        "OffsetCommit with the current generation while the group prepares a \
         rebalance (as consumers do when partitions are revoked)",
        offset_commit(&mut c1, group, gen1, &m1, topic, &[(0, 5)]),
        vec![(0, NONE)],
    );
    let j1 = Join::consumer(group, &m1, topic).call(&mut c1);
    let j2 = join_reply(&mut c2, join2);
    assert_eq!((j1.error, j2.error), (NONE, NONE), "{j1:?} {j2:?}");
    let gen2 = j1.generation;
    assert!(gen2 > gen1, "generation {gen2} after {gen1}");
    assert_eq!(j2.generation, gen2);
    assert_eq!(j1.leader, j2.leader);
    let (leader, follower, lc, fc) = if j1.leader == m1 {
        (&m1, &m2, &mut c1, &mut c2)
    } else {
        (&m2, &m1, &mut c2, &mut c1)
    };
    let leader_join = if j1.leader == m1 { &j1 } else { &j2 };
    let described: BTreeSet<&str> = leader_join.members.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(described, BTreeSet::from([m1.as_str(), m2.as_str()]));

    // Between JoinGroup and SyncGroup (CompletingRebalance). Kafka checks the
    // member and generation first and answers REBALANCE_IN_PROGRESS only to a
    // valid member of the new generation.
    checks.eq(
        "Heartbeat with the previous generation, before SyncGroup",
        heartbeat(lc, group, gen1, leader),
        ILLEGAL_GENERATION,
    );
    checks.eq(
        "OffsetCommit with the previous generation, before SyncGroup",
        offset_commit(lc, group, gen1, leader, topic, &[(0, 6)]),
        vec![(0, ILLEGAL_GENERATION)],
    );
    checks.eq(
        "OffsetCommit from an unknown member, before SyncGroup",
        offset_commit(lc, group, gen2, "no-such-member", topic, &[(0, 6)]),
        vec![(0, UNKNOWN_MEMBER_ID)],
    );
    checks.eq(
        "OffsetCommit with the new generation, before SyncGroup",
        offset_commit(lc, group, gen2, leader, topic, &[(0, 6)]),
        vec![(0, REBALANCE_IN_PROGRESS)],
    );

    // The follower's SyncGroup waits for the leader's.
    let fsync = send_sync(fc, group, gen2, follower, &[]);
    let lsync = send_sync(
        lc,
        group,
        gen2,
        leader,
        &[
            (leader.as_str(), assignment(topic, &[0])),
            (follower.as_str(), assignment(topic, &[1])),
        ],
    );
    let (lerr, lassign) = sync_reply(lc, lsync);
    let (ferr, fassign) = sync_reply(fc, fsync);
    assert_eq!((lerr, ferr), (NONE, NONE));
    assert_eq!(parse_assignment(&lassign)[topic], BTreeSet::from([0]));
    assert_eq!(parse_assignment(&fassign)[topic], BTreeSet::from([1]));
    assert_eq!(heartbeat(fc, group, gen2, follower), NONE);

    // Stable again: generation 1 is stale.
    checks.eq(
        "Heartbeat with the previous generation",
        heartbeat(lc, group, gen1, leader),
        ILLEGAL_GENERATION,
    );
    checks.eq(
        "OffsetCommit with the previous generation",
        offset_commit(lc, group, gen1, leader, topic, &[(0, 7)]),
        vec![(0, ILLEGAL_GENERATION)],
    );
    checks.eq(
        "OffsetCommit by the follower",
        offset_commit(fc, group, gen2, follower, topic, &[(1, 9)]),
        vec![(1, NONE)],
    );
    checks.eq(
        "committed offsets of the group",
        offset_fetch(lc, group, topic, &[0, 1]),
        (NONE, vec![(0, 5, NONE), (1, 9, NONE)]),
    );

    // Offsets of a group that never existed: -1 and no error, as in Kafka.
    checks.eq(
        "OffsetFetch for a group that does not exist",
        offset_fetch(lc, "never-existed", topic, &[0, 1]),
        (NONE, vec![(0, -1, NONE), (1, -1, NONE)]),
    );

    // Deleting groups.
    checks.eq(
        "DeleteGroups of a group that does not exist",
        delete_groups(lc, &["no-such-group"]),
        vec![("no-such-group".to_string(), GROUP_ID_NOT_FOUND)],
    );
    checks.eq(
        "DeleteGroups of a group with members",
        delete_groups(lc, &[group]),
        vec![(group.to_string(), NON_EMPTY_GROUP)],
    );
    assert_eq!(
        leave_group(lc, group, &[leader.as_str(), follower.as_str()]),
        (NONE, vec![NONE, NONE])
    );
    let g = describe_group(&broker, group);
    assert_eq!((g.state.as_str(), g.members.len()), ("Empty", 0), "{g:?}");
    checks.eq(
        "Heartbeat after leaving",
        heartbeat(fc, group, gen2, follower),
        UNKNOWN_MEMBER_ID,
    );
    checks.eq(
        "DeleteGroups of an empty group",
        delete_groups(lc, &[group]),
        vec![(group.to_string(), NONE)],
    );
    checks.eq(
        "OffsetFetch of a deleted group",
        offset_fetch(lc, group, topic, &[0, 1]),
        (NONE, vec![(0, -1, NONE), (1, -1, NONE)]),
    );
    checks.eq(
        "state of a deleted group",
        describe_group(&broker, group).state.as_str(),
        "Dead",
    );
    checks.eq(
        "DeleteGroups of a deleted group",
        delete_groups(lc, &[group]),
        vec![(group.to_string(), GROUP_ID_NOT_FOUND)],
    );
    checks.finish();
}

/// JoinGroup v0-6 declare the protocol name a non-nullable string (it became
/// nullable in v7), so error responses must carry an empty string, as Kafka
/// sends, rather than null: a strict decoder (the Java client's) rejects a
/// null there.
#[test]
fn groups_join_error_responses_follow_the_v5_schema() {
    let broker = start_broker();
    broker.create_topic("raw-schema", 1, &[]);
    let mut raw = Raw::connect(&broker);
    let r = Join::consumer("schema-group", "", "raw-schema").call(&mut raw);
    assert_eq!(r.error, MEMBER_ID_REQUIRED);
    assert_eq!(
        r.protocol.as_deref(),
        Some(""),
        "protocol name of a JoinGroup v5 MEMBER_ID_REQUIRED response"
    );
    let mut bad = Join::consumer("schema-group", "", "raw-schema");
    bad.session_timeout_ms = 1;
    let r = bad.call(&mut raw);
    assert_eq!(r.error, INVALID_SESSION_TIMEOUT);
    assert_eq!(
        r.protocol.as_deref(),
        Some(""),
        "protocol name of a JoinGroup v5 INVALID_SESSION_TIMEOUT response"
    );
}

/// Commits sent back to back on one connection (as librdkafka's
/// asynchronous commits are) are applied in the order they were sent: the
/// last one is what OffsetFetch reads, on the same connection and after a
/// restart of the consumer.
#[test]
fn pipelined_offset_commits_apply_in_order() {
    let broker = start_broker();
    let topic = "pipelined-commits";
    const PARTS: i32 = 8;
    const COMMITS: i64 = 400;
    broker.create_topic(topic, PARTS, &[]);
    let group = "pipelined-commits-group";
    let mut raw = Raw::connect(&broker);
    let mut sent = Vec::new();
    for n in 1..=COMMITS {
        let mut e = Enc::default();
        e.str(group)
            .i32(-1)
            .str("")
            .nstr(None)
            .i32(1)
            .str(topic)
            .i32(PARTS);
        for p in 0..PARTS {
            e.i32(p).i64(n * 10 + i64::from(p)).i32(-1).nstr(Some(""));
        }
        sent.push(raw.send(OFFSET_COMMIT, 7, &e.done()));
    }
    for corr in sent {
        let b = raw.recv(corr, Duration::from_secs(30));
        let mut d = Dec(&b);
        d.i32();
        let topics = d.array(|d| {
            let _name = d.str();
            d.array(|d| (d.i32(), d.i16()))
        });
        assert!(
            topics.iter().flatten().all(|(_, err)| *err == 0),
            "commit {corr} failed: {topics:?}"
        );
    }
    let all: Vec<i32> = (0..PARTS).collect();
    let expected: Vec<(i32, i64, i16)> = (0..PARTS)
        .map(|p| (p, COMMITS * 10 + i64::from(p), 0))
        .collect();
    assert_eq!(
        offset_fetch(&mut raw, group, topic, &all),
        (0, expected.clone())
    );
    let mut fresh = Raw::connect(&broker);
    assert_eq!(offset_fetch(&mut fresh, group, topic, &all), (0, expected));
}
