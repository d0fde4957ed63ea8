//! Purpose grants kept in the metadata store (`sluice purposes grant`),
//! added to those of the policy file's `[grants]` table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::store::meta::{MetaStore, Result};

/// Principal → purposes granted.
pub type Granted = BTreeMap<String, BTreeSet<String>>;

/// With other brokers changing grants, they are read again after this.
const RELOAD_AFTER: Duration = Duration::from_secs(2);

pub struct PurposeGrants {
    meta: MetaStore,
    cache: RwLock<Option<(Arc<Granted>, Instant)>>,
}

impl PurposeGrants {
    pub fn new(meta: MetaStore) -> PurposeGrants {
        PurposeGrants {
            meta,
            cache: RwLock::new(None),
        }
    }

    /// The stored grants. The same `Arc` comes back while they do not
    /// change, so callers may key caches by its address.
    pub async fn all(&self) -> Result<Arc<Granted>> {
        let previous = self.cache.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((g, at)) = &previous
            && at.elapsed() < RELOAD_AFTER
        {
            return Ok(g.clone());
        }
        let rows = sqlx::query("SELECT principal, purpose FROM purpose_grants")
            .fetch_all(self.meta.pool())
            .await?;
        let mut granted = Granted::new();
        for r in &rows {
            granted
                .entry(r.get::<String, _>(0))
                .or_default()
                .insert(r.get(1));
        }
        let granted = match previous {
            Some((old, _)) if *old == granted => old,
            _ => Arc::new(granted),
        };
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) =
            Some((granted.clone(), Instant::now()));
        Ok(granted)
    }

    pub async fn grant(&self, principal: &str, purpose: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO purpose_grants (principal, purpose) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(principal)
        .bind(purpose)
        .execute(self.meta.pool())
        .await?;
        self.invalidate();
        Ok(())
    }

    /// False when there was no such grant.
    pub async fn revoke(&self, principal: &str, purpose: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM purpose_grants WHERE principal = $1 AND purpose = $2")
            .bind(principal)
            .bind(purpose)
            .execute(self.meta.pool())
            .await?;
        self.invalidate();
        Ok(done.rows_affected() > 0)
    }

    fn invalidate(&self) {
        let mut slot = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, at)) = slot.as_mut() {
            // Keep the snapshot (for the `Arc` identity), force a reload.
            *at = Instant::now() - RELOAD_AFTER;
        }
    }
}
