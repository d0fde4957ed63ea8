//! Many brokers over one metadata store: membership, placement and leases.
//!
//! - **Membership.** Each broker process registers a row under its broker
//!   id and renews its heartbeat every `heartbeat_interval`. A broker is
//!   live while its last heartbeat is younger than the session timeout.
//!   Heartbeats are stamped with the database's clock, so brokers with
//!   skewed clocks still agree on who is live.
//! - **Placement (how leadership is presented).** Every broker can append
//!   to and read any partition (offsets are assigned in the metadata
//!   transaction), so "leader" only tells clients where to send. Each
//!   partition's leader is chosen by rendezvous hashing over the live
//!   brokers: every broker computes the same answer from the same list
//!   without coordination, partitions spread evenly, a producer's batches
//!   for one partition all go to one broker (so they batch and keep their
//!   idempotent sequence on one broker), and when a broker dies only its
//!   own partitions move. Pinning each client to the broker it reached
//!   would batch as well but leave a client with nowhere to go when that
//!   broker dies until it re-bootstraps; hashing fails over on the next
//!   metadata refresh.
//! - **Leases.** One broker at a time coordinates a consumer group or
//!   archives a topic. A lease names its holder's broker id and process
//!   instance and is valid while that holder is live, so renewing the
//!   heartbeat renews every lease at once; when a broker stops
//!   heartbeating, its leases become free for the others to take. A
//!   broker that cannot renew its heartbeat in time gives up its leases
//!   itself before anyone else may take them.
//!
//! May use: `store` (brokers and leases are rows in the metadata store).
//!
//! Contract: every broker computes the same `leader` from the same live
//! list; a lease is held by at most one live broker (`acquire`, `holds`,
//! `should_run`); `placement_changes` and `lost_leases` tell the appender
//! and the group coordinator when cached state may be stale.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::meta::{MetaError, MetaStore};

/// Lease kinds.
pub const GROUP_LEASE: &str = "group";
pub const ARCHIVER_LEASE: &str = "archiver";
/// Cluster-wide upkeep (retention, segment garbage collection).
pub const UPKEEP_LEASE: &str = "upkeep";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

pub struct Cluster {
    meta: MetaStore,
    me: LiveBroker,
    instance: String,
    session_timeout: Duration,
    heartbeat_interval: Duration,
    live: RwLock<Arc<Vec<LiveBroker>>>,
    /// Leases this broker holds, valid until `healthy_until`.
    held: Mutex<HashSet<(String, String)>>,
    /// Heartbeat renewed at `t` keeps our leases ours until `t` plus the
    /// session timeout on the database's clock; locally we stop trusting
    /// them earlier, by a safety margin, in case our clock runs slow.
    healthy_until: Mutex<Instant>,
    /// Bumped each time this broker loses its leases (its heartbeat lapsed):
    /// the group coordinator and archiver drop what they held.
    lost: watch::Sender<u64>,
    /// Bumped whenever the live brokers change, and with them the leaders.
    placement: watch::Sender<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(
        "broker id {id} is in use by a live broker at {host}:{port}; give every broker its own --broker-id"
    )]
    IdInUse { id: i32, host: String, port: i32 },
}

impl From<sqlx::Error> for ClusterError {
    fn from(e: sqlx::Error) -> ClusterError {
        ClusterError::Meta(MetaError::Db(e))
    }
}

impl Cluster {
    /// Registers this broker. A live row under the same id from another
    /// address is refused; one from the same address is this broker's
    /// previous process (killed, then restarted) and is taken over at once.
    pub async fn join(
        meta: MetaStore,
        me: LiveBroker,
        session_timeout: Duration,
        heartbeat_interval: Duration,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let instance = Uuid::new_v4().simple().to_string();
        let now = meta.backend().now_ms_sql();
        let timeout_ms = session_timeout.as_millis() as i64;
        let existing = sqlx::query(&format!(
            "SELECT host, port, CASE WHEN heartbeat_ms >= {now} - $2 THEN 1 ELSE 0 END
             FROM brokers WHERE broker_id = $1"
        ))
        .bind(me.id as i64)
        .bind(timeout_ms)
        .fetch_optional(meta.pool())
        .await?;
        if let Some(row) = existing {
            let host: String = row.get(0);
            let port = row.get::<i64, _>(1) as i32;
            let live = row.get::<i64, _>(2) == 1;
            if live && (host != me.host || port != me.port) {
                return Err(ClusterError::IdInUse {
                    id: me.id,
                    host,
                    port,
                });
            }
        }
        sqlx::query(&format!(
            "INSERT INTO brokers (broker_id, host, port, instance, started_ms, heartbeat_ms)
             VALUES ($1, $2, $3, $4, {now}, {now})
             ON CONFLICT (broker_id) DO UPDATE SET host = excluded.host, port = excluded.port,
                 instance = excluded.instance, started_ms = excluded.started_ms,
                 heartbeat_ms = excluded.heartbeat_ms"
        ))
        .bind(me.id as i64)
        .bind(&me.host)
        .bind(me.port as i64)
        .bind(&instance)
        .execute(meta.pool())
        .await?;
        let (lost, _) = watch::channel(0);
        let (placement, _) = watch::channel(0);
        let cluster = Arc::new(Cluster {
            meta,
            live: RwLock::new(Arc::new(vec![me.clone()])),
            me,
            instance,
            session_timeout,
            heartbeat_interval,
            held: Mutex::new(HashSet::new()),
            healthy_until: Mutex::new(Instant::now() + Self::trusted(session_timeout)),
            lost,
            placement,
        });
        cluster.refresh_live().await?;
        tracing::info!(
            broker_id = cluster.me.id,
            live = cluster.live().len(),
            "registered in the cluster"
        );
        Ok(cluster)
    }

    /// How long after a renewal we still trust our leases: the session
    /// timeout less a margin for clock drift and the renewal's own delay.
    fn trusted(session_timeout: Duration) -> Duration {
        session_timeout.mul_f64(0.8)
    }

    pub fn me(&self) -> &LiveBroker {
        &self.me
    }

    /// The live brokers, by id (never empty: this broker is always listed).
    pub fn live(&self) -> Arc<Vec<LiveBroker>> {
        self.live
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn broker(&self, id: i32) -> Option<LiveBroker> {
        self.live().iter().find(|b| b.id == id).cloned()
    }

    /// A receiver that changes whenever this broker loses its leases.
    pub fn lost_leases(&self) -> watch::Receiver<u64> {
        self.lost.subscribe()
    }

    /// A receiver that changes whenever partition leaders may have moved.
    pub fn placement_changes(&self) -> watch::Receiver<u64> {
        self.placement.subscribe()
    }

    /// The broker that leads (receives produce and fetch for) a partition.
    pub fn leader(&self, topic: &str, partition: i32) -> LiveBroker {
        let mut key = topic.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&partition.to_be_bytes());
        pick(&self.live(), &key)
    }

    /// The broker that should take an unheld lease on `name`.
    pub fn preferred(&self, kind: &str, name: &str) -> LiveBroker {
        let key = format!("{kind}\0{name}");
        pick(&self.live(), key.as_bytes())
    }

    fn healthy(&self) -> bool {
        self.healthy_until
            .lock()
            .map(|t| Instant::now() < *t)
            .unwrap_or(false)
    }

    /// Whether this broker holds the lease (without asking the store).
    pub fn holds(&self, kind: &str, name: &str) -> bool {
        self.healthy()
            && self
                .held
                .lock()
                .map(|h| h.contains(&(kind.to_string(), name.to_string())))
                .unwrap_or(false)
    }

    /// Takes the lease if it is free (never held, or its holder is no
    /// longer live). Returns whether this broker holds it now.
    pub async fn acquire(&self, kind: &str, name: &str) -> Result<bool, MetaError> {
        if self.holds(kind, name) {
            return Ok(true);
        }
        if !self.healthy() {
            return Ok(false);
        }
        let now = self.meta.backend().now_ms_sql();
        let row = sqlx::query(&format!(
            "INSERT INTO leases (kind, name, holder, instance, acquired_ms)
             VALUES ($1, $2, $3, $4, {now})
             ON CONFLICT (kind, name) DO UPDATE SET holder = excluded.holder,
                 instance = excluded.instance, acquired_ms = excluded.acquired_ms
             WHERE (leases.holder = excluded.holder AND leases.instance = excluded.instance)
                OR NOT EXISTS (SELECT 1 FROM brokers b
                               WHERE b.broker_id = leases.holder AND b.instance = leases.instance
                                 AND b.heartbeat_ms >= {now} - $5)
             RETURNING holder"
        ))
        .bind(kind)
        .bind(name)
        .bind(self.me.id as i64)
        .bind(&self.instance)
        .bind(self.session_timeout.as_millis() as i64)
        .fetch_optional(self.meta.pool())
        .await?;
        let won = row.is_some();
        if won && let Ok(mut h) = self.held.lock() {
            h.insert((kind.to_string(), name.to_string()));
        }
        Ok(won)
    }

    /// Whether this broker should do the work `name` guards now: it holds
    /// the lease, or the lease is free and this broker is the one to take
    /// it (so work spreads over the brokers instead of going to whichever
    /// asks first).
    pub async fn should_run(&self, kind: &str, name: &str) -> bool {
        if self.holds(kind, name) {
            return true;
        }
        if self.preferred(kind, name).id != self.me.id {
            return false;
        }
        match self.acquire(kind, name).await {
            Ok(won) => {
                if won {
                    tracing::info!(kind, name, "took lease");
                }
                won
            }
            Err(e) => {
                tracing::warn!(kind, name, error = %e, "cannot take lease");
                false
            }
        }
    }

    /// Gives a lease back (this broker stops doing the work it guards).
    pub async fn release(&self, kind: &str, name: &str) -> Result<(), MetaError> {
        if let Ok(mut h) = self.held.lock() {
            h.remove(&(kind.to_string(), name.to_string()));
        }
        sqlx::query(
            "DELETE FROM leases WHERE kind = $1 AND name = $2 AND holder = $3 AND instance = $4",
        )
        .bind(kind)
        .bind(name)
        .bind(self.me.id as i64)
        .bind(&self.instance)
        .execute(self.meta.pool())
        .await?;
        Ok(())
    }

    /// The live holders of every valid lease of `kind`, by name.
    pub async fn holders(&self, kind: &str) -> Result<HashMap<String, i32>, MetaError> {
        let now = self.meta.backend().now_ms_sql();
        let rows = sqlx::query(&format!(
            "SELECT l.name, l.holder FROM leases l JOIN brokers b
               ON b.broker_id = l.holder AND b.instance = l.instance
             WHERE l.kind = $1 AND b.heartbeat_ms >= {now} - $2"
        ))
        .bind(kind)
        .bind(self.session_timeout.as_millis() as i64)
        .fetch_all(self.meta.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as i32))
            .collect())
    }

    /// The live holder of one lease, if any.
    pub async fn holder(&self, kind: &str, name: &str) -> Result<Option<i32>, MetaError> {
        if self.holds(kind, name) {
            return Ok(Some(self.me.id));
        }
        let now = self.meta.backend().now_ms_sql();
        let row = sqlx::query(&format!(
            "SELECT l.holder FROM leases l JOIN brokers b
               ON b.broker_id = l.holder AND b.instance = l.instance
             WHERE l.kind = $1 AND l.name = $2 AND b.heartbeat_ms >= {now} - $3"
        ))
        .bind(kind)
        .bind(name)
        .bind(self.session_timeout.as_millis() as i64)
        .fetch_optional(self.meta.pool())
        .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as i32))
    }

    /// Who does the work `name` guards: its live holder, else the broker
    /// that should take it.
    pub async fn owner(&self, kind: &str, name: &str) -> LiveBroker {
        match self.holder(kind, name).await {
            Ok(Some(id)) => self
                .broker(id)
                .unwrap_or_else(|| self.preferred(kind, name)),
            Ok(None) => self.preferred(kind, name),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read lease holder");
                self.preferred(kind, name)
            }
        }
    }

    async fn refresh_live(&self) -> Result<(), MetaError> {
        let now = self.meta.backend().now_ms_sql();
        let rows = sqlx::query(&format!(
            "SELECT broker_id, host, port FROM brokers WHERE heartbeat_ms >= {now} - $1
             ORDER BY broker_id"
        ))
        .bind(self.session_timeout.as_millis() as i64)
        .fetch_all(self.meta.pool())
        .await?;
        let mut list: Vec<LiveBroker> = rows
            .iter()
            .map(|r| LiveBroker {
                id: r.get::<i64, _>(0) as i32,
                host: r.get(1),
                port: r.get::<i64, _>(2) as i32,
            })
            .collect();
        if !list.iter().any(|b| b.id == self.me.id) {
            list.push(self.me.clone());
            list.sort_by_key(|b| b.id);
        }
        let changed = {
            let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
            let changed = **live != list;
            *live = Arc::new(list.clone());
            changed
        };
        if changed {
            let ids: Vec<i32> = list.iter().map(|b| b.id).collect();
            tracing::info!(live = ?ids, "live brokers changed");
            self.placement.send_modify(|n| *n += 1);
        }
        metrics::gauge!("sluice_live_brokers").set(list.len() as f64);
        Ok(())
    }

    /// Renews the heartbeat once. Returns false when the registration is
    /// gone (another process took this broker id after ours lapsed).
    async fn beat(&self) -> Result<bool, MetaError> {
        let started = Instant::now();
        let now = self.meta.backend().now_ms_sql();
        let done = sqlx::query(&format!(
            "UPDATE brokers SET heartbeat_ms = {now} WHERE broker_id = $1 AND instance = $2"
        ))
        .bind(self.me.id as i64)
        .bind(&self.instance)
        .execute(self.meta.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Ok(mut t) = self.healthy_until.lock() {
            *t = started + Self::trusted(self.session_timeout);
        }
        Ok(true)
    }

    fn drop_leases(&self, why: &str) {
        let had = self.held.lock().map(|mut h| std::mem::take(&mut *h));
        if let Ok(had) = had
            && !had.is_empty()
        {
            tracing::warn!(leases = had.len(), "giving up leases: {why}");
        }
        self.lost.send_modify(|n| *n += 1);
    }

    /// Heartbeats until `stop`, then leaves the cluster: its leases are
    /// freed at once instead of after the session timeout.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_healthy = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            match self.beat().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(
                        broker_id = self.me.id,
                        "this broker's registration was taken over; registering again"
                    );
                    self.drop_leases("registration lost");
                    if let Err(e) = self.reregister().await {
                        tracing::error!(error = %e, "cannot register again");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the broker heartbeat"),
            }
            let healthy = self.healthy();
            if was_healthy && !healthy {
                self.drop_leases("the metadata store did not take a heartbeat in time");
            }
            was_healthy = healthy;
            if let Err(e) = self.refresh_live().await {
                tracing::warn!(error = %e, "cannot list live brokers");
            }
        }
        let _ = sqlx::query("DELETE FROM leases WHERE holder = $1 AND instance = $2")
            .bind(self.me.id as i64)
            .bind(&self.instance)
            .execute(self.meta.pool())
            .await;
        let _ = sqlx::query("DELETE FROM brokers WHERE broker_id = $1 AND instance = $2")
            .bind(self.me.id as i64)
            .bind(&self.instance)
            .execute(self.meta.pool())
            .await;
    }

    async fn reregister(&self) -> Result<(), MetaError> {
        let now = self.meta.backend().now_ms_sql();
        sqlx::query(&format!(
            "UPDATE brokers SET instance = $2, host = $3, port = $4, heartbeat_ms = {now}
             WHERE broker_id = $1 AND heartbeat_ms < {now} - $5"
        ))
        .bind(self.me.id as i64)
        .bind(&self.instance)
        .bind(&self.me.host)
        .bind(self.me.port as i64)
        .bind(self.session_timeout.as_millis() as i64)
        .execute(self.meta.pool())
        .await?;
        Ok(())
    }
}

/// Rendezvous (highest random weight) choice of a broker for `key`.
fn pick(live: &[LiveBroker], key: &[u8]) -> LiveBroker {
    let k = fnv1a(key);
    live.iter()
        .max_by_key(|b| (mix(k ^ mix(b.id as u64)), b.id))
        .cloned()
        .unwrap_or(LiveBroker {
            id: -1,
            host: String::new(),
            port: 0,
        })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: spreads nearby inputs over the whole range.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> Vec<LiveBroker> {
        ids.iter()
            .map(|&id| LiveBroker {
                id,
                host: "127.0.0.1".into(),
                port: 9000 + id,
            })
            .collect()
    }

    #[test]
    fn placement_spreads_and_moves_only_the_dead_brokers_share() {
        let three = brokers(&[1, 2, 3]);
        let two = brokers(&[1, 3]);
        let mut per = HashMap::new();
        let mut moved = 0;
        for p in 0..3000i32 {
            let key = format!("orders\0{p}");
            let a = pick(&three, key.as_bytes());
            *per.entry(a.id).or_insert(0) += 1;
            let b = pick(&two, key.as_bytes());
            if a.id != 2 {
                assert_eq!(a.id, b.id, "a partition moved off a live broker");
            } else {
                moved += 1;
            }
        }
        for id in [1, 2, 3] {
            let n = per[&id];
            assert!((800..1200).contains(&n), "broker {id} leads {n} of 3000");
        }
        assert_eq!(moved, per[&2]);
    }

    #[tokio::test]
    async fn leases_go_to_one_broker_and_move_when_it_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let meta = MetaStore::connect(&url).await.unwrap();
        let b = |id| LiveBroker {
            id,
            host: "127.0.0.1".into(),
            port: 9000 + id,
        };
        let timeout = Duration::from_secs(5);
        let beat = Duration::from_millis(100);
        let one = Cluster::join(meta.clone(), b(1), timeout, beat)
            .await
            .unwrap();
        let two = Cluster::join(meta.clone(), b(2), timeout, beat)
            .await
            .unwrap();
        assert!(one.acquire(GROUP_LEASE, "g").await.unwrap());
        assert!(!two.acquire(GROUP_LEASE, "g").await.unwrap());
        assert_eq!(two.holder(GROUP_LEASE, "g").await.unwrap(), Some(1));
        // Another process claiming id 1 from elsewhere is refused.
        let dup = Cluster::join(
            meta.clone(),
            LiveBroker {
                id: 1,
                host: "10.0.0.9".into(),
                port: 1,
            },
            timeout,
            beat,
        )
        .await;
        assert!(matches!(dup, Err(ClusterError::IdInUse { id: 1, .. })));
        // Broker 1 leaves: its lease is free for broker 2.
        let stop = CancellationToken::new();
        let task = tokio::spawn(one.clone().run(stop.clone()));
        stop.cancel();
        task.await.unwrap();
        assert!(two.acquire(GROUP_LEASE, "g").await.unwrap());
        assert!(two.holds(GROUP_LEASE, "g"));
    }
}
