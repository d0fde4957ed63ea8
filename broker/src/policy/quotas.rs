//! Client quotas, as Kafka defines them (KIP-13, KIP-55, KIP-546): byte
//! rates for produce and fetch per user, per client id or per both, with
//! default entities, stored in the metadata store so that every broker
//! sharing it enforces the same quotas.
//!
//! Which quota applies to a request is Kafka's order of precedence, per
//! quota key (most specific first):
//!
//! ```text
//!  1 user=U,         client-id=C        5 user=<default>, client-id=<default>
//!  2 user=U,         client-id=<default> 6 user=<default>
//!  3 user=U                             7 client-id=C
//!  4 user=<default>, client-id=C        8 client-id=<default>
//! ```
//!
//! Usage is measured per quota entity as Kafka does: the clients that a
//! quota applies to share one rate, e.g. all clients of user U under level
//! 3, each client id separately under level 8. The rate is a sliding window
//! of [`SAMPLES`] one-second samples; a request that takes it above the
//! quota is answered at once with `throttle_time_ms`, and the connection is
//! not read for that long (Kafka mutes the channel).
//!
//! Each broker measures the traffic it serves, as each Kafka broker does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::store::meta::{MetaStore, Result};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// Samples in the rate window (Kafka's `quota.window.num`).
pub const SAMPLES: i64 = 11;
/// Length of one sample (Kafka's `quota.window.size.seconds`).
pub const SAMPLE_MS: i64 = 1000;
/// The longest throttle a single request gets: the whole window.
pub const MAX_THROTTLE_MS: i64 = SAMPLES * SAMPLE_MS;

/// With other brokers changing quotas, they are read again after this.
const RELOAD_AFTER: Duration = Duration::from_secs(2);

/// An entity: entity type → name, `None` being the default entity.
pub type Entity = BTreeMap<String, Option<String>>;

/// The quota keys and whether their value must be a whole number.
fn key_kind(entity: &Entity, key: &str) -> Option<bool> {
    if entity.contains_key(IP) {
        return (key == CONNECTION_CREATION_RATE).then_some(true);
    }
    match key {
        PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE => Some(true),
        REQUEST_PERCENTAGE | CONTROLLER_MUTATION_RATE => Some(false),
        _ => None,
    }
}

/// Checks an entity the way Kafka does: `user`, `client-id`, both, or `ip`.
pub fn validate_entity(entity: &Entity) -> std::result::Result<(), String> {
    if entity.is_empty() {
        return Err("a quota entity needs at least one entity type".into());
    }
    if let Some(bad) = entity
        .keys()
        .find(|t| ![USER, CLIENT_ID, IP].contains(&t.as_str()))
    {
        return Err(format!(
            "unknown quota entity type '{bad}' (expected user, client-id or ip)"
        ));
    }
    if entity.contains_key(IP) && entity.len() > 1 {
        return Err("an ip quota entity cannot be combined with user or client-id".into());
    }
    if let Some(Some(ip)) = entity.get(IP)
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(format!("'{ip}' is not an IP address"));
    }
    Ok(())
}

/// Checks one quota value for `entity`.
pub fn validate_value(entity: &Entity, key: &str, value: f64) -> std::result::Result<(), String> {
    let Some(whole) = key_kind(entity, key) else {
        return Err(if entity.contains_key(IP) {
            format!("'{key}' is not a quota of ip entities (only {CONNECTION_CREATION_RATE} is)")
        } else {
            format!(
                "unknown quota key '{key}' (expected {PRODUCER_BYTE_RATE}, {CONSUMER_BYTE_RATE}, {REQUEST_PERCENTAGE} or {CONTROLLER_MUTATION_RATE})"
            )
        });
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("{key} must be a positive number, got {value}"));
    }
    if whole && value.fract() != 0.0 {
        return Err(format!("{key} must be a whole number, got {value}"));
    }
    Ok(())
}

fn entity_text(entity: &Entity) -> String {
    let pairs: Vec<(&String, &Option<String>)> = entity.iter().collect();
    serde_json::to_string(&pairs).unwrap_or_default()
}

fn entity_from_text(text: &str) -> Option<Entity> {
    let pairs: Vec<(String, Option<String>)> = serde_json::from_str(text).ok()?;
    Some(pairs.into_iter().collect())
}

/// Whom usage is measured for: (user, client id), either `None` when
/// the quota that applies does not depend on it.
pub type QuotaEntity = (Option<String>, Option<String>);

/// Every stored quota: entity → (quota key → value).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct QuotaTable {
    pub entries: BTreeMap<String, (Entity, BTreeMap<String, f64>)>,
}

/// How a user or client id slot of an entity is filled.
#[derive(Debug, Clone, Copy)]
enum Slot<'a> {
    Absent,
    Default,
    Named(&'a str),
}

impl QuotaTable {
    fn lookup(&self, user: Slot<'_>, client: Slot<'_>) -> Option<&BTreeMap<String, f64>> {
        let mut e = Entity::new();
        for (t, s) in [(USER, user), (CLIENT_ID, client)] {
            match s {
                Slot::Absent => {}
                Slot::Default => {
                    e.insert(t.into(), None);
                }
                Slot::Named(n) => {
                    e.insert(t.into(), Some(n.into()));
                }
            }
        }
        self.entries.get(&entity_text(&e)).map(|(_, v)| v)
    }

    /// The quota `key` for `user`'s client `client_id`, and the entity its
    /// usage is measured for: (user, client id), either left out when the
    /// quota does not depend on it.
    pub fn quota_for(&self, key: &str, user: &str, client_id: &str) -> Option<(f64, QuotaEntity)> {
        use Slot::*;
        let (u, c) = (Named(user), Named(client_id));
        let levels = [
            (u, c, true, true),
            (u, Default, true, true),
            (u, Absent, true, false),
            (Default, c, true, true),
            (Default, Default, true, true),
            (Default, Absent, true, false),
            (Absent, c, false, true),
            (Absent, Default, false, true),
        ];
        levels.iter().find_map(|(us, cs, by_user, by_client)| {
            let v = self.lookup(*us, *cs)?.get(key)?;
            Some((
                *v,
                (
                    by_user.then(|| user.to_owned()),
                    by_client.then(|| client_id.to_owned()),
                ),
            ))
        })
    }
}

/// One quota entity's recent usage: `SAMPLES` samples of `SAMPLE_MS`.
#[derive(Debug, Default)]
struct Rate {
    /// (sample start, amount), oldest first.
    samples: VecDeque<(i64, f64)>,
}

impl Rate {
    fn expire(&mut self, now: i64) {
        while self
            .samples
            .front()
            .is_some_and(|(start, _)| *start <= now - SAMPLES * SAMPLE_MS)
        {
            self.samples.pop_front();
        }
    }

    fn record(&mut self, now: i64, amount: f64) {
        self.expire(now);
        match self.samples.back_mut() {
            Some((start, total)) if now < *start + SAMPLE_MS => *total += amount,
            _ => self.samples.push_back((now, amount)),
        }
    }

    fn unrecord(&mut self, amount: f64) {
        if let Some((_, total)) = self.samples.back_mut() {
            *total = (*total - amount).max(0.0);
        }
    }

    /// (amount per second, window length in ms). The window counts at
    /// least `SAMPLES - 1` whole samples, so a first burst is not measured
    /// over a few milliseconds.
    fn measure(&self, now: i64) -> (f64, i64) {
        let total: f64 = self.samples.iter().map(|(_, a)| a).sum();
        let oldest = self.samples.front().map_or(now, |(s, _)| *s);
        let mut window = (now - oldest).max(0);
        let full = window / SAMPLE_MS;
        if full < SAMPLES - 1 {
            window += (SAMPLES - 1 - full) * SAMPLE_MS;
        }
        (total * 1000.0 / window as f64, window)
    }
}

/// Kafka's throttle time: how long the client must wait for its rate over
/// the window to come back down to the quota.
fn throttle_ms(rate: f64, window_ms: i64, quota: f64) -> i32 {
    if rate <= quota {
        return 0;
    }
    let ms = (rate - quota) / quota * window_ms as f64;
    (ms.round() as i64).clamp(1, MAX_THROTTLE_MS) as i32
}

/// Which byte-rate quota a measurement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Produce,
    Fetch,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Produce => PRODUCER_BYTE_RATE,
            Kind::Fetch => CONSUMER_BYTE_RATE,
        }
    }
}

type UsageKey = (Kind, Option<String>, Option<String>);

/// Stored quotas (cached) and the usage this broker has measured.
pub struct Quotas {
    meta: MetaStore,
    cache: RwLock<Option<(Arc<QuotaTable>, Instant)>>,
    /// std Mutex: held for a few arithmetic operations, never across an await.
    usage: Mutex<HashMap<UsageKey, Rate>>,
    started: Instant,
}

/// A measured request, to be taken back if its response is not sent.
pub struct Recorded {
    key: UsageKey,
    amount: f64,
}

impl Quotas {
    pub fn new(meta: MetaStore) -> Quotas {
        Quotas {
            meta,
            cache: RwLock::new(None),
            usage: Mutex::new(HashMap::new()),
            started: Instant::now(),
        }
    }

    /// The stored quotas.
    pub async fn all(&self) -> Result<Arc<QuotaTable>> {
        let previous = self.cache.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((t, at)) = &previous
            && at.elapsed() < RELOAD_AFTER
        {
            return Ok(t.clone());
        }
        let rows = sqlx::query("SELECT entity, quota_key, value FROM client_quotas")
            .fetch_all(self.meta.pool())
            .await?;
        let mut table = QuotaTable::default();
        for r in &rows {
            let text: String = r.get(0);
            let Some(entity) = entity_from_text(&text) else {
                continue;
            };
            table
                .entries
                .entry(text)
                .or_insert_with(|| (entity, BTreeMap::new()))
                .1
                .insert(r.get(1), r.get(2));
        }
        let table = match previous {
            Some((old, _)) if *old == table => old,
            _ => Arc::new(table),
        };
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) =
            Some((table.clone(), Instant::now()));
        Ok(table)
    }

    /// Applies `ops` (key, `Some(value)` to set, `None` to remove) to
    /// `entity` in one transaction.
    pub async fn alter(&self, entity: &Entity, ops: &[(String, Option<f64>)]) -> Result<()> {
        let text = entity_text(entity);
        let mut tx = self.meta.pool().begin().await?;
        for (key, value) in ops {
            match value {
                Some(v) => {
                    sqlx::query(
                        "INSERT INTO client_quotas (entity, quota_key, value) VALUES ($1, $2, $3)
                         ON CONFLICT (entity, quota_key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(&text)
                    .bind(key)
                    .bind(*v)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM client_quotas WHERE entity = $1 AND quota_key = $2")
                        .bind(&text)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        let mut slot = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, at)) = slot.as_mut() {
            *at = Instant::now() - RELOAD_AFTER;
        }
        Ok(())
    }

    fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// Records `bytes` of `kind` traffic for `principal`'s client
    /// `client_id`; returns the throttle time (0 when within its quota, or
    /// when no quota applies) and the measurement.
    pub async fn record(
        &self,
        kind: Kind,
        principal: &str,
        client_id: &str,
        bytes: usize,
    ) -> (i32, Option<Recorded>) {
        let table = match self.all().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read client quotas; not throttling");
                return (0, None);
            }
        };
        if table.entries.is_empty() {
            return (0, None);
        }
        // Kafka quotas name users by the principal's name.
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        let Some((quota, (u, c))) = table.quota_for(kind.key(), user, client_id) else {
            return (0, None);
        };
        let key = (kind, u, c);
        let now = self.now_ms();
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        if usage.len() > 10_000 {
            // Forget entities idle for the whole window.
            usage.retain(|_, r| {
                r.expire(now);
                !r.samples.is_empty()
            });
        }
        let rate = usage.entry(key.clone()).or_default();
        rate.record(now, bytes as f64);
        let (observed, window) = rate.measure(now);
        let throttle = throttle_ms(observed, window, quota);
        if throttle > 0 {
            metrics::counter!("sluice_quota_throttled_total", "quota" => kind.key()).increment(1);
        }
        (
            throttle,
            Some(Recorded {
                key,
                amount: bytes as f64,
            }),
        )
    }

    /// The most a fetch of `principal`'s client `client_id` may return
    /// under its consumer byte-rate quota: what the quota allows over the
    /// window, so one response never exceeds it (else the client could
    /// never fetch again, as in Kafka before KAFKA-9677).
    pub async fn max_fetch_bytes(&self, principal: &str, client_id: &str) -> Option<i32> {
        let table = self.all().await.ok()?;
        if table.entries.is_empty() {
            return None;
        }
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        let (quota, _) = table.quota_for(CONSUMER_BYTE_RATE, user, client_id)?;
        let bytes = quota * ((SAMPLES - 1) * SAMPLE_MS) as f64 / 1000.0;
        Some(bytes.clamp(1.0, i32::MAX as f64) as i32)
    }

    /// Takes back a measurement whose response was not sent (a throttled
    /// fetch answers without records, as Kafka's does).
    pub fn unrecord(&self, r: Recorded) {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rate) = usage.get_mut(&r.key) {
            rate.unrecord(r.amount);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(pairs: &[(&str, Option<&str>)]) -> Entity {
        pairs
            .iter()
            .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
            .collect()
    }

    type Row<'a> = (&'a [(&'a str, Option<&'a str>)], &'a str, f64);

    fn table(rows: &[Row<'_>]) -> QuotaTable {
        let mut t = QuotaTable::default();
        for (e, k, v) in rows {
            let e = entity(e);
            t.entries
                .entry(entity_text(&e))
                .or_insert_with(|| (e, BTreeMap::new()))
                .1
                .insert(k.to_string(), *v);
        }
        t
    }

    #[test]
    fn precedence_follows_kafka() {
        let t = table(&[
            (&[("client-id", None)], PRODUCER_BYTE_RATE, 8.0),
            (&[("client-id", Some("app"))], PRODUCER_BYTE_RATE, 7.0),
            (&[("user", None)], PRODUCER_BYTE_RATE, 6.0),
            (&[("user", Some("alice"))], PRODUCER_BYTE_RATE, 3.0),
            (
                &[("user", Some("alice")), ("client-id", Some("app"))],
                PRODUCER_BYTE_RATE,
                1.0,
            ),
            (&[("user", Some("bob"))], CONSUMER_BYTE_RATE, 30.0),
        ]);
        let q = |u: &str, c: &str| t.quota_for(PRODUCER_BYTE_RATE, u, c);
        assert_eq!(
            q("alice", "app"),
            Some((1.0, (Some("alice".into()), Some("app".into()))))
        );
        assert_eq!(
            q("alice", "other"),
            Some((3.0, (Some("alice".into()), None)))
        );
        assert_eq!(q("bob", "app"), Some((6.0, (Some("bob".into()), None))));
        assert_eq!(
            t.quota_for(CONSUMER_BYTE_RATE, "bob", "x"),
            Some((30.0, (Some("bob".into()), None)))
        );
        assert_eq!(t.quota_for(CONSUMER_BYTE_RATE, "carol", "x"), None);
        let only_clients = table(&[
            (&[("client-id", None)], PRODUCER_BYTE_RATE, 8.0),
            (&[("client-id", Some("app"))], PRODUCER_BYTE_RATE, 7.0),
        ]);
        assert_eq!(
            only_clients.quota_for(PRODUCER_BYTE_RATE, "u", "app"),
            Some((7.0, (None, Some("app".into()))))
        );
        assert_eq!(
            only_clients.quota_for(PRODUCER_BYTE_RATE, "u", "x"),
            Some((8.0, (None, Some("x".into()))))
        );
    }

    #[test]
    fn throttle_time_brings_the_rate_back_to_the_quota() {
        let mut r = Rate::default();
        r.record(0, 50_000.0);
        let (rate, window) = r.measure(0);
        assert_eq!(window, 10_000);
        assert_eq!(rate, 5_000.0);
        assert_eq!(throttle_ms(rate, window, 10_000.0), 0);
        // Twice the quota: wait as long again as the window.
        assert_eq!(throttle_ms(rate, window, 2_500.0), 10_000);
        assert_eq!(
            throttle_ms(rate * 10.0, window, 2_500.0),
            MAX_THROTTLE_MS as i32
        );
        r.record(30_000, 1.0);
        assert_eq!(r.samples.len(), 1, "old samples expire");
        r.unrecord(1.0);
        assert_eq!(r.measure(30_000).0, 0.0);
    }

    #[test]
    fn entities_and_values_are_checked() {
        assert!(validate_entity(&entity(&[("user", Some("a"))])).is_ok());
        assert!(validate_entity(&entity(&[("user", None), ("client-id", Some("c"))])).is_ok());
        assert!(validate_entity(&entity(&[("ip", Some("10.0.0.1"))])).is_ok());
        assert!(validate_entity(&entity(&[])).is_err());
        assert!(validate_entity(&entity(&[("group", Some("g"))])).is_err());
        assert!(validate_entity(&entity(&[("ip", None), ("user", None)])).is_err());
        assert!(validate_entity(&entity(&[("ip", Some("nope"))])).is_err());
        let user = entity(&[("user", Some("a"))]);
        assert!(validate_value(&user, PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(validate_value(&user, REQUEST_PERCENTAGE, 12.5).is_ok());
        assert!(validate_value(&user, PRODUCER_BYTE_RATE, 1.5).is_err());
        assert!(validate_value(&user, PRODUCER_BYTE_RATE, -1.0).is_err());
        assert!(validate_value(&user, "bytes_per_day", 1.0).is_err());
        assert!(validate_value(&user, CONNECTION_CREATION_RATE, 1.0).is_err());
        let ip = entity(&[("ip", None)]);
        assert!(validate_value(&ip, CONNECTION_CREATION_RATE, 10.0).is_ok());
        assert!(validate_value(&ip, PRODUCER_BYTE_RATE, 10.0).is_err());
    }
}
