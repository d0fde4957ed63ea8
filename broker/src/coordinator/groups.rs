//! The group coordinator for Kafka's classic consumer-group protocol.
//!
//! ```text
//!            join (new member / changed metadata / leave / expiry)
//!   Empty ───────────────► PreparingRebalance ──all joined or timeout──► CompletingRebalance
//!     ▲                          ▲                                          │ leader's SyncGroup
//!     └── last member leaves ────┴──────── member joins, leaves, expires ◄─ Stable
//! ```
//!
//! Assignment is done by the clients (the leader runs the assignor), so
//! range, round-robin and cooperative-sticky all work: the coordinator only
//! collects members, picks a common protocol, hands the leader everyone's
//! metadata and relays the leader's assignments.
//!
//! Each group is one `tokio::sync::Mutex`, held only while its state changes
//! (never while waiting for other members: waiters park on oneshot channels).
//! After every completed rebalance the group (generation, members and their
//! assignments) is written to the metadata store, and committed offsets are
//! written before the commit is answered, so a restarted broker resumes
//! every group where it was.
//!
//! With many brokers, each group has one coordinator: the broker holding the
//! group's lease (see [`crate::cluster`]). A broker takes a free lease on
//! the first request for the group and loads the group's stored state then;
//! requests to any other broker are answered NOT_COORDINATOR, which sends
//! clients back to FindCoordinator. When a broker loses its leases it drops
//! its groups, and their members rejoin at the new coordinator.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, GROUP_LEASE};
use crate::store::meta::{MetaStore, StoredGroup};

pub const MIN_SESSION_TIMEOUT_MS: i32 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names Kafka tools print.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a member joins with.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, group instance id, metadata): only for the leader.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// The leader must not compute a new assignment (JoinGroup v9+).
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(e: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(e),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

#[derive(Debug, Serialize, Deserialize)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
    #[serde(skip, default = "Instant::now")]
    last_seen: Instant,
    #[serde(skip)]
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    #[serde(skip)]
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| Bytes::from(m.clone()))
            .unwrap_or_default()
    }
}

pub struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: String,
    protocol: Option<String>,
    leader: Option<String>,
    /// Ordered by member id for stable output.
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending_ids: HashSet<String>,
    /// Counts rebalances so a stale timer does not end a newer one.
    rebalance_epoch: u64,
    /// A join phase may not complete before this (initial rebalance delay).
    not_before: Instant,
}

/// Summary of a group for ListGroups / DescribeGroups / tools.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub generation: i32,
    pub members: Vec<MemberSummary>,
}

#[derive(Debug, Clone)]
pub struct MemberSummary {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// Decides whether an offset commit is accepted.
#[derive(Debug, Clone)]
pub struct CommitAuth {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

pub struct Coordinator {
    meta: MetaStore,
    cluster: Arc<Cluster>,
    /// Held while a group's lease is taken and its state loaded.
    claiming: Mutex<()>,
    /// Groups whose state was loaded under the current lease.
    loaded: StdMutex<HashSet<String>>,
    groups: StdMutex<HashMap<String, Arc<Mutex<Group>>>>,
    initial_delay: Duration,
    /// Groups that have committed offsets but no member metadata.
    shutdown: CancellationToken,
}

fn new_group(id: &str) -> Group {
    Group {
        id: id.to_string(),
        state: GroupState::Empty,
        generation: 0,
        protocol_type: String::new(),
        protocol: None,
        leader: None,
        members: BTreeMap::new(),
        pending_ids: HashSet::new(),
        rebalance_epoch: 0,
        not_before: Instant::now(),
    }
}

/// A group as stored after its last completed rebalance.
fn restored_group(stored: StoredGroup) -> Group {
    let members: Vec<Member> = serde_json::from_str(&stored.members_json).unwrap_or_default();
    let mut g = new_group(&stored.group_id);
    g.generation = stored.generation;
    g.protocol_type = stored.protocol_type;
    g.protocol = stored.protocol;
    g.leader = stored.leader;
    g.members = members
        .into_iter()
        .map(|m| (m.member_id.clone(), m))
        .collect();
    // Members get a full session to heartbeat to this coordinator.
    g.state = if g.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    g
}

impl Coordinator {
    /// Starts the session-expiry task; groups are loaded as this broker
    /// takes their leases.
    pub fn start(
        meta: MetaStore,
        cluster: Arc<Cluster>,
        initial_delay: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Coordinator> {
        let c = Arc::new(Coordinator {
            meta,
            cluster,
            claiming: Mutex::new(()),
            loaded: StdMutex::new(HashSet::new()),
            groups: StdMutex::new(HashMap::new()),
            initial_delay,
            shutdown,
        });
        tokio::spawn(c.clone().expire_sessions());
        tokio::spawn(c.clone().drop_groups_on_lost_leases());
        c
    }

    /// Makes sure this broker coordinates `group_id`: it holds the group's
    /// lease, or takes it while it is free and loads the group's stored
    /// state. NOT_COORDINATOR when another live broker holds it.
    pub async fn claim(&self, group_id: &str) -> Result<(), ResponseError> {
        if self.claimed(group_id) {
            return Ok(());
        }
        // Requests of one group's members arrive together on many
        // connections: one of them takes the lease and loads the group,
        // the others find it loaded once they get the lock.
        let _claiming = self.claiming.lock().await;
        if self.claimed(group_id) {
            return Ok(());
        }
        match self.cluster.acquire(GROUP_LEASE, group_id).await {
            Ok(true) => {}
            Ok(false) => return Err(ResponseError::NotCoordinator),
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "cannot take the group lease");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
        // What another coordinator may have changed is in the store; any
        // copy in memory from an earlier lease is stale.
        let stored = match self.meta.load_group(group_id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "cannot load the group");
                let _ = self.cluster.release(GROUP_LEASE, group_id).await;
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        };
        tracing::info!(group = group_id, "now coordinating group");
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.insert(group_id.to_string());
        }
        if let Ok(mut map) = self.groups.lock() {
            match stored {
                Some(stored) => {
                    map.insert(
                        group_id.to_string(),
                        Arc::new(Mutex::new(restored_group(stored))),
                    );
                }
                // Created by its first join or commit, as before any lease.
                None => {
                    map.remove(group_id);
                }
            }
        }
        Ok(())
    }

    /// Whether this broker holds the group's lease and has loaded it.
    fn claimed(&self, group_id: &str) -> bool {
        self.cluster.holds(GROUP_LEASE, group_id)
            && self.loaded.lock().is_ok_and(|l| l.contains(group_id))
    }

    /// Groups of leases this broker lost are another broker's now: drop
    /// them, and answer members parked in a rebalance NOT_COORDINATOR so
    /// they find the new coordinator.
    async fn drop_groups_on_lost_leases(self: Arc<Self>) {
        let mut lost = self.cluster.lost_leases();
        loop {
            tokio::select! {
                changed = lost.changed() => if changed.is_err() { return },
                _ = self.shutdown.cancelled() => return,
            }
            if let Ok(mut loaded) = self.loaded.lock() {
                loaded.clear();
            }
            let groups: Vec<Arc<Mutex<Group>>> = match self.groups.lock() {
                Ok(mut m) => m.drain().map(|(_, g)| g).collect(),
                Err(_) => continue,
            };
            for group in groups {
                let mut g = group.lock().await;
                g.state = GroupState::Dead;
                for m in g.members.values_mut() {
                    if let Some(w) = m.join_waiter.take() {
                        let _ = w.send(JoinResult::error(
                            ResponseError::NotCoordinator,
                            &m.member_id,
                        ));
                    }
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncResult {
                            error: Some(ResponseError::NotCoordinator),
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }

    fn group(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups.lock().ok()?.get(id).cloned()
    }

    fn group_or_create(&self, id: &str) -> Arc<Mutex<Group>> {
        let mut map = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(new_group(id))))
            .clone()
    }

    /// JoinGroup: admits the member (a new id, a static member's return, or
    /// a known member), records its protocols, and answers once the join
    /// phase completes, or at once when a stable group needs no rebalance.
    pub async fn join(self: &Arc<Self>, p: JoinParams) -> JoinResult {
        if let Err(e) = check_join(&p) {
            return JoinResult::error(e, &p.member_id);
        }
        if let Err(e) = self.claim(&p.group_id).await {
            return JoinResult::error(e, &p.member_id);
        }
        let group = if p.member_id.is_empty() {
            self.group_or_create(&p.group_id)
        } else {
            match self.group(&p.group_id) {
                Some(g) => g,
                None => return JoinResult::error(ResponseError::UnknownMemberId, &p.member_id),
            }
        };
        let rx = {
            let mut g = group.lock().await;
            if g.state == GroupState::Dead {
                return JoinResult::error(ResponseError::CoordinatorNotAvailable, &p.member_id);
            }
            if !protocols_fit(&g, &p) {
                return JoinResult::error(ResponseError::InconsistentGroupProtocol, &p.member_id);
            }
            let (member_id, static_rejoin) = match self.admit(&mut g, &p) {
                Ok(admitted) => admitted,
                Err((code, member_id)) => return JoinResult::error(code, &member_id),
            };
            let (tx, rx) = oneshot::channel();
            let changed = upsert_member(&mut g, &member_id, &p, tx);
            if g.members.len() == 1 && g.protocol_type.is_empty() {
                g.protocol_type = p.protocol_type.clone();
            }
            match g.state {
                GroupState::PreparingRebalance => {}
                GroupState::Stable if static_rejoin && choose_protocol(&g) == g.protocol => {
                    // As Kafka: a restarted static member that does not change
                    // the group's protocol gets the current generation back
                    // without a rebalance (its assignment comes from SyncGroup).
                    let mut result = self.join_result(&g, &member_id);
                    // A restarted static leader keeps the current assignment:
                    // it gets the members but is told to skip assigning (v9+).
                    result.skip_assignment = !result.members.is_empty();
                    if let Some(m) = g.members.get_mut(&member_id) {
                        m.join_waiter = None;
                    }
                    self.persist(&g).await;
                    return result;
                }
                GroupState::Stable
                    if !changed
                        && (static_rejoin || g.leader.as_deref() != Some(member_id.as_str())) =>
                {
                    // A follower (or a restarted static member) rejoining with
                    // unchanged metadata: nothing to rebalance.
                    let result = self.join_result(&g, &member_id);
                    if let Some(m) = g.members.get_mut(&member_id) {
                        m.join_waiter = None;
                    }
                    return result;
                }
                _ => self.prepare_rebalance(&mut g, "member joined"),
            }
            self.maybe_complete_join(&mut g).await;
            rx
        };
        rx.await
            .unwrap_or_else(|_| JoinResult::error(ResponseError::UnknownMemberId, &p.member_id))
    }

    /// The id a joining member goes by, and whether it is a static member
    /// returning under a new id; or the error that refuses it, with the
    /// member id to answer with (a first join that must come back with the
    /// id it is given, or an unknown id).
    fn admit(
        &self,
        g: &mut Group,
        p: &JoinParams,
    ) -> Result<(String, bool), (ResponseError, String)> {
        let mut member_id = p.member_id.clone();
        let is_new = member_id.is_empty() || g.pending_ids.contains(&member_id);
        let mut static_rejoin = false;
        if member_id.is_empty()
            && let Some(instance) = &p.group_instance_id
            && let Some(old) = g
                .members
                .values()
                .find(|m| m.group_instance_id.as_ref() == Some(instance))
                .map(|m| m.member_id.clone())
        {
            // A static member rejoining under a new id replaces its old
            // self and keeps its place (and assignment) in the group.
            member_id = self.replace_static(g, &old, &p.client_id);
            static_rejoin = true;
        } else if member_id.is_empty() {
            member_id = format!("{}-{}", p.client_id, uuid::Uuid::new_v4());
            if p.require_known_member_id && p.group_instance_id.is_none() {
                g.pending_ids.insert(member_id.clone());
                return Err((ResponseError::MemberIdRequired, member_id));
            }
        } else if !is_new && !g.members.contains_key(&member_id) {
            return Err((ResponseError::UnknownMemberId, member_id));
        }
        g.pending_ids.remove(&member_id);
        Ok((member_id, static_rejoin))
    }

    /// Moves a static member to a new member id; the old id is fenced.
    fn replace_static(&self, g: &mut Group, old_id: &str, client_id: &str) -> String {
        let new_id = format!("{}-{}", client_id, uuid::Uuid::new_v4());
        if let Some(mut m) = g.members.remove(old_id) {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(ResponseError::FencedInstanceId, old_id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult {
                    error: Some(ResponseError::FencedInstanceId),
                    ..Default::default()
                });
            }
            m.member_id = new_id.clone();
            m.last_seen = Instant::now();
            g.members.insert(new_id.clone(), m);
        }
        if g.leader.as_deref() == Some(old_id) {
            g.leader = Some(new_id.clone());
        }
        tracing::info!(group = %g.id, old = %old_id, new = %new_id, "static member rejoined");
        new_id
    }

    fn join_result(&self, g: &Group, member_id: &str) -> JoinResult {
        let protocol = g.protocol.clone().unwrap_or_default();
        let leader = g.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            g.members
                .values()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.metadata_for(&protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation_id: g.generation,
            protocol_type: Some(g.protocol_type.clone()),
            protocol_name: Some(protocol),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    fn prepare_rebalance(self: &Arc<Self>, g: &mut Group, why: &str) {
        let was_empty = g.state == GroupState::Empty;
        // Members waiting in SyncGroup of the old generation must rejoin.
        for m in g.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult {
                    error: Some(ResponseError::RebalanceInProgress),
                    ..Default::default()
                });
            }
        }
        g.state = GroupState::PreparingRebalance;
        g.rebalance_epoch += 1;
        let epoch = g.rebalance_epoch;
        let timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(m.session_timeout_ms))
            .max()
            .unwrap_or(0)
            .max(0) as u64;
        g.not_before = if was_empty {
            Instant::now() + self.initial_delay
        } else {
            Instant::now()
        };
        tracing::info!(group = %g.id, reason = why, "preparing rebalance");
        metrics::counter!("sluice_group_rebalances_total").increment(1);
        let me = self.clone();
        let id = g.id.clone();
        let delay = if was_empty {
            self.initial_delay
        } else {
            Duration::ZERO
        };
        tokio::spawn(async move {
            // Check again once the initial delay has passed...
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
                if let Some(group) = me.group(&id) {
                    let mut g = group.lock().await;
                    if g.rebalance_epoch == epoch && g.state == GroupState::PreparingRebalance {
                        me.maybe_complete_join(&mut g).await;
                    }
                }
            }
            // ...and force completion at the rebalance timeout.
            tokio::time::sleep(Duration::from_millis(timeout).saturating_sub(delay)).await;
            if let Some(group) = me.group(&id) {
                let mut g = group.lock().await;
                if g.rebalance_epoch == epoch && g.state == GroupState::PreparingRebalance {
                    me.complete_join(&mut g).await;
                }
            }
        });
    }

    /// Completes the join phase once every member has rejoined.
    async fn maybe_complete_join(&self, g: &mut Group) {
        if g.state != GroupState::PreparingRebalance || Instant::now() < g.not_before {
            return;
        }
        if g.members.values().all(|m| m.join_waiter.is_some()) {
            self.complete_join(g).await;
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, a
    /// protocol is chosen and every waiting member is answered.
    async fn complete_join(&self, g: &mut Group) {
        let dropped: Vec<String> = g
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in dropped {
            tracing::info!(group = %g.id, member = %id, "member did not rejoin in time; removed");
            g.members.remove(&id);
        }
        g.generation += 1;
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            g.protocol = None;
            g.leader = None;
            self.persist(g).await;
            return;
        }
        g.protocol = choose_protocol(g);
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g.state = GroupState::CompletingRebalance;
        for m in g.members.values_mut() {
            m.assignment.clear();
        }
        tracing::info!(group = %g.id, generation = g.generation, members = g.members.len(), protocol = ?g.protocol, "rebalance: members joined");
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(g, &id);
            if let Some(m) = g.members.get_mut(&id) {
                m.last_seen = Instant::now();
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let err = |e| SyncResult {
            error: Some(e),
            ..Default::default()
        };
        if let Err(e) = self.claim(group_id).await {
            return err(e);
        }
        let err = |e| SyncResult {
            error: Some(e),
            ..Default::default()
        };
        let Some(group) = self.group(group_id) else {
            return err(ResponseError::UnknownMemberId);
        };
        let rx = {
            let mut g = group.lock().await;
            let Some(member) = g.members.get_mut(member_id) else {
                return err(ResponseError::UnknownMemberId);
            };
            member.last_seen = Instant::now();
            if generation != g.generation {
                return err(ResponseError::IllegalGeneration);
            }
            if protocol_type.is_some_and(|t| t != g.protocol_type)
                || protocol_name.is_some_and(|n| Some(n) != g.protocol.as_deref())
            {
                return err(ResponseError::InconsistentGroupProtocol);
            }
            match g.state {
                GroupState::PreparingRebalance => return err(ResponseError::RebalanceInProgress),
                GroupState::Stable => {
                    return self.sync_result(&g, member_id);
                }
                GroupState::Empty | GroupState::Dead => return err(ResponseError::UnknownMemberId),
                GroupState::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = g.members.get_mut(member_id) {
                m.sync_waiter = Some(tx);
            }
            if g.leader.as_deref() == Some(member_id) {
                let given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in g.members.values_mut() {
                    m.assignment = given
                        .get(&m.member_id)
                        .map(|b| b.to_vec())
                        .unwrap_or_default();
                }
                g.state = GroupState::Stable;
                tracing::info!(group = %g.id, generation = g.generation, "rebalance complete");
                self.persist(&g).await;
                let ids: Vec<String> = g.members.keys().cloned().collect();
                for id in ids {
                    let result = self.sync_result(&g, &id);
                    if let Some(m) = g.members.get_mut(&id)
                        && let Some(w) = m.sync_waiter.take()
                    {
                        let _ = w.send(result);
                    }
                }
            }
            rx
        };
        rx.await
            .unwrap_or_else(|_| err(ResponseError::RebalanceInProgress))
    }

    fn sync_result(&self, g: &Group, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: Some(g.protocol_type.clone()),
            protocol_name: g.protocol.clone(),
            assignment: g
                .members
                .get(member_id)
                .map(|m| Bytes::from(m.assignment.clone()))
                .unwrap_or_default(),
        }
    }

    pub async fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        if let Err(e) = self.claim(group_id).await {
            return Some(e);
        }
        let Some(group) = self.group(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        let mut g = group.lock().await;
        if let Some(e) = fenced(&g, member_id, group_instance_id) {
            return Some(e);
        }
        let state = g.state;
        let current = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        m.last_seen = Instant::now();
        if generation != current {
            return Some(ResponseError::IllegalGeneration);
        }
        match state {
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
            _ => None,
        }
    }

    /// Removes members; returns one result per requested (member id, instance id).
    pub async fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.claim(group_id).await?;
        let Some(group) = self.group(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let mut g = group.lock().await;
        let mut results = Vec::new();
        let mut removed = false;
        for (member_id, instance) in members {
            let found = if !member_id.is_empty() {
                g.members
                    .contains_key(&member_id)
                    .then_some(member_id.clone())
            } else {
                instance.as_ref().and_then(|i| {
                    g.members
                        .values()
                        .find(|m| m.group_instance_id.as_ref() == Some(i))
                        .map(|m| m.member_id.clone())
                })
            };
            match found {
                Some(id) => {
                    if let Some(mut m) = g.members.remove(&id) {
                        if let Some(w) = m.join_waiter.take() {
                            let _ = w.send(JoinResult::error(ResponseError::UnknownMemberId, &id));
                        }
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncResult {
                                error: Some(ResponseError::UnknownMemberId),
                                ..Default::default()
                            });
                        }
                    }
                    tracing::info!(group = %g.id, member = %id, "member left");
                    removed = true;
                    results.push(None);
                }
                None => results.push(Some(ResponseError::UnknownMemberId)),
            }
        }
        if removed {
            self.after_removal(&mut g, "member left").await;
        }
        Ok(results)
    }

    async fn after_removal(self: &Arc<Self>, g: &mut Group, why: &str) {
        match g.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(g).await,
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(g, why);
                self.maybe_complete_join(g).await;
            }
            _ => {}
        }
        if g.members.is_empty() && g.state == GroupState::PreparingRebalance {
            self.complete_join(g).await;
        }
    }

    /// Checks whether an offset commit may proceed (Kafka's rules).
    pub async fn authorize_commit(&self, a: &CommitAuth) -> Option<ResponseError> {
        if let Err(e) = self.claim(&a.group_id).await {
            return Some(e);
        }
        let group = match self.group(&a.group_id) {
            Some(g) => g,
            None if a.generation_id < 0 && a.member_id.is_empty() => {
                // A consumer with manual assignment: the group exists only for offsets.
                let g = self.group_or_create(&a.group_id);
                let g2 = g.lock().await;
                self.persist(&g2).await;
                return None;
            }
            None => return Some(ResponseError::IllegalGeneration),
        };
        let mut g = group.lock().await;
        if a.generation_id < 0 && a.member_id.is_empty() {
            return if g.members.is_empty() {
                None
            } else {
                Some(ResponseError::UnknownMemberId)
            };
        }
        if let Some(e) = fenced(&g, &a.member_id, a.group_instance_id.as_deref()) {
            return Some(e);
        }
        let current = g.generation;
        let state = g.state;
        let Some(m) = g.members.get_mut(&a.member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        m.last_seen = Instant::now();
        if a.generation_id != current {
            return Some(ResponseError::IllegalGeneration);
        }
        if state == GroupState::CompletingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        None
    }

    pub async fn summary(&self, group_id: &str) -> Option<GroupSummary> {
        let group = self.group(group_id)?;
        let g = group.lock().await;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupSummary {
            group_id: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone(),
            protocol: protocol.clone(),
            generation: g.generation,
            members: g
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: Bytes::from(m.assignment.clone()),
                })
                .collect(),
        })
    }

    /// The groups this broker coordinates, including offset-only groups:
    /// those whose lease it holds, and free ones it is the preferred
    /// coordinator of (which it takes now). Listing every broker lists
    /// every group once, as Kafka's ListGroups does.
    pub async fn list(&self) -> Vec<GroupSummary> {
        let mut ids: Vec<String> = match self.groups.lock() {
            Ok(m) => m.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let stored = self.meta.group_ids().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list stored groups");
            Vec::new()
        });
        let holders = self.cluster.holders(GROUP_LEASE).await.unwrap_or_default();
        let me = self.cluster.me().id;
        for id in stored {
            if ids.contains(&id) {
                continue;
            }
            let mine = match holders.get(&id) {
                Some(holder) => *holder == me,
                None => self.cluster.preferred(GROUP_LEASE, &id).id == me,
            };
            if mine && self.claim(&id).await.is_ok() {
                ids.push(id);
            }
        }
        let mut out = Vec::new();
        for id in ids {
            match self.summary(&id).await {
                Some(s) if s.state == GroupState::Dead => {}
                Some(s) => out.push(s),
                // Committed offsets only.
                None => out.push(GroupSummary {
                    group_id: id,
                    state: GroupState::Empty,
                    protocol_type: String::new(),
                    protocol: String::new(),
                    generation: 0,
                    members: Vec::new(),
                }),
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Deletes an empty group and its offsets.
    pub async fn delete(&self, group_id: &str) -> Option<ResponseError> {
        if let Err(e) = self.claim(group_id).await {
            return Some(e);
        }
        let known = self.group(group_id);
        let has_offsets = self
            .meta
            .groups_with_offsets()
            .await
            .map(|g| g.iter().any(|x| x == group_id))
            .unwrap_or(false);
        if let Some(group) = &known {
            let mut g = group.lock().await;
            if !g.members.is_empty() {
                return Some(ResponseError::NonEmptyGroup);
            }
            g.state = GroupState::Dead;
        } else if !has_offsets {
            return Some(ResponseError::GroupIdNotFound);
        }
        if let Err(e) = self.meta.delete_group(group_id).await {
            tracing::error!(error = %e, "cannot delete group");
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Ok(mut map) = self.groups.lock() {
            map.remove(group_id);
        }
        tracing::info!(group = group_id, "deleted group");
        None
    }

    /// Topics the group's members subscribe to (consumer protocol only).
    pub async fn subscribed_topics(&self, group_id: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        if let Some(s) = self.summary(group_id).await
            && s.protocol_type == "consumer"
        {
            for m in s.members {
                out.extend(parse_subscription(&m.metadata));
            }
        }
        out
    }

    async fn persist(&self, g: &Group) {
        let members: Vec<&Member> = g.members.values().collect();
        let stored = StoredGroup {
            group_id: g.id.clone(),
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            generation: g.generation,
            leader: g.leader.clone(),
            members_json: serde_json::to_string(&members).unwrap_or_else(|_| "[]".into()),
        };
        if let Err(e) = self.meta.save_group(&stored).await {
            tracing::error!(group = %g.id, error = %e, "cannot persist group state");
        }
    }

    /// Removes members whose session timed out.
    async fn expire_sessions(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let groups: Vec<Arc<Mutex<Group>>> = match self.groups.lock() {
                Ok(m) => m.values().cloned().collect(),
                Err(_) => continue,
            };
            for group in groups {
                let mut g = group.lock().await;
                let now = Instant::now();
                let expired: Vec<String> = g
                    .members
                    .values()
                    // A member waiting in JoinGroup is alive; the rebalance timeout covers it.
                    .filter(|m| m.join_waiter.is_none())
                    .filter(|m| {
                        now.duration_since(m.last_seen)
                            > Duration::from_millis(m.session_timeout_ms.max(0) as u64)
                    })
                    .map(|m| m.member_id.clone())
                    .collect();
                if expired.is_empty() {
                    continue;
                }
                for id in &expired {
                    tracing::info!(group = %g.id, member = %id, "member session expired");
                    if let Some(mut m) = g.members.remove(id)
                        && let Some(w) = m.sync_waiter.take()
                    {
                        let _ = w.send(SyncResult {
                            error: Some(ResponseError::UnknownMemberId),
                            ..Default::default()
                        });
                    }
                }
                self.after_removal(&mut g, "member session expired").await;
            }
        }
    }
}

/// FENCED_INSTANCE_ID when a static instance id now belongs to another member.
fn fenced(g: &Group, member_id: &str, instance: Option<&str>) -> Option<ResponseError> {
    let instance = instance?;
    let owner = g
        .members
        .values()
        .find(|m| m.group_instance_id.as_deref() == Some(instance))?;
    (owner.member_id != member_id).then_some(ResponseError::FencedInstanceId)
}

/// A JoinGroup's own fields: a group id, a session timeout in bounds,
/// and at least one protocol.
fn check_join(p: &JoinParams) -> Result<(), ResponseError> {
    if p.group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    if p.session_timeout_ms < MIN_SESSION_TIMEOUT_MS
        || p.session_timeout_ms > MAX_SESSION_TIMEOUT_MS
    {
        return Err(ResponseError::InvalidSessionTimeout);
    }
    if p.protocol_type.is_empty() || p.protocols.is_empty() {
        return Err(ResponseError::InconsistentGroupProtocol);
    }
    Ok(())
}

/// Whether a joining member can share the group's protocol: the same
/// protocol type, and one protocol every other member supports.
fn protocols_fit(g: &Group, p: &JoinParams) -> bool {
    if g.members.is_empty() {
        return true;
    }
    g.protocol_type == p.protocol_type
        && p.protocols.iter().any(|(name, _)| {
            g.members
                .values()
                .filter(|m| m.member_id != p.member_id)
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
}

/// Records a joining member's protocols and timeouts (adding it if new),
/// with `waiter` to answer its join; true when its protocols changed (or
/// it is new), which needs a rebalance.
fn upsert_member(
    g: &mut Group,
    member_id: &str,
    p: &JoinParams,
    waiter: oneshot::Sender<JoinResult>,
) -> bool {
    let protocols: Vec<(String, Vec<u8>)> = p
        .protocols
        .iter()
        .map(|(n, m)| (n.clone(), m.to_vec()))
        .collect();
    match g.members.get_mut(member_id) {
        Some(m) => {
            let changed = m.protocols != protocols;
            m.protocols = protocols;
            m.session_timeout_ms = p.session_timeout_ms;
            m.rebalance_timeout_ms = p.rebalance_timeout_ms;
            m.last_seen = Instant::now();
            if let Some(old) = m.join_waiter.replace(waiter) {
                let _ = old.send(JoinResult::error(ResponseError::UnknownMemberId, member_id));
            }
            changed
        }
        None => {
            g.members.insert(
                member_id.to_owned(),
                Member {
                    member_id: member_id.to_owned(),
                    group_instance_id: p.group_instance_id.clone(),
                    client_id: p.client_id.clone(),
                    client_host: p.client_host.clone(),
                    session_timeout_ms: p.session_timeout_ms,
                    rebalance_timeout_ms: p.rebalance_timeout_ms,
                    protocols,
                    assignment: Vec::new(),
                    last_seen: Instant::now(),
                    join_waiter: Some(waiter),
                    sync_waiter: None,
                },
            );
            true
        }
    }
}

/// The first protocol (in the members' own preference order) that every
/// member supports, chosen by votes as Kafka does.
fn choose_protocol(g: &Group) -> Option<String> {
    let candidates: Vec<&String> = g
        .members
        .values()
        .next()?
        .protocols
        .iter()
        .map(|(n, _)| n)
        .filter(|n| {
            g.members
                .values()
                .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
        })
        .collect();
    let mut votes: HashMap<&String, usize> = HashMap::new();
    for m in g.members.values() {
        if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
            *votes.entry(n).or_default() += 1;
        }
    }
    candidates
        .iter()
        .max_by_key(|c| {
            (
                votes.get(*c).copied().unwrap_or(0),
                std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
            )
        })
        .map(|c| (*c).clone())
}

/// Topic names from a ConsumerProtocolSubscription (version, topics, ...).
pub fn parse_subscription(data: &[u8]) -> Vec<String> {
    let mut b = data;
    let mut out = Vec::new();
    let read_i16 = |b: &mut &[u8]| -> Option<i16> {
        if b.len() < 2 {
            return None;
        }
        let v = i16::from_be_bytes([b[0], b[1]]);
        *b = &b[2..];
        Some(v)
    };
    let Some(_version) = read_i16(&mut b) else {
        return out;
    };
    if b.len() < 4 {
        return out;
    }
    let n = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    b = &b[4..];
    for _ in 0..n.max(0) {
        let Some(len) = read_i16(&mut b) else { break };
        let len = len.max(0) as usize;
        if b.len() < len {
            break;
        }
        out.push(String::from_utf8_lossy(&b[..len]).into_owned());
        b = &b[len..];
    }
    out
}
