//! What one connection is and has done, as its handlers see it: the
//! principal it acts for, the purpose its client id declares, the order
//! its produce requests store in, and whether it is throttled.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::policy::purposes::{Policies, Purpose};

/// A client id's purpose, or why it was refused.
type Decision = Result<Option<Purpose>, String>;

/// Per-connection facts handlers may need.
#[derive(Debug)]
pub struct ConnContext {
    pub peer: SocketAddr,
    /// Signalled once the connection's latest produce request has queued its
    /// batches; the next produce request waits on it before queueing its own,
    /// so one connection's batches are stored in request order even though
    /// requests are checked (validated) concurrently.
    pub produce_chain: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
    /// The listener the connection came in on.
    pub listener: crate::security::settings::Protocol,
    /// Who the connection acts for (`User:ANONYMOUS` until it authenticates).
    principal: std::sync::Mutex<Arc<str>>,
    /// The purpose decided for the client id last seen (clients send the
    /// same id in every request, so it is decided, and logged, once).
    /// Keyed by the client id and the stored grants it was decided with.
    purpose: std::sync::Mutex<Option<(String, usize, Decision)>>,
    /// Topics this connection has read, for the audit log.
    read_topics: std::sync::Mutex<HashSet<String>>,
    /// A client over its quota is not read from until then (Kafka mutes
    /// the channel for the throttle time it returned).
    muted_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl ConnContext {
    pub fn new(peer: SocketAddr, listener: crate::security::settings::Protocol) -> ConnContext {
        ConnContext {
            peer,
            listener,
            produce_chain: std::sync::Mutex::new(None),
            principal: std::sync::Mutex::new(crate::security::ANONYMOUS.into()),
            purpose: std::sync::Mutex::new(None),
            read_topics: std::sync::Mutex::new(HashSet::new()),
            muted_until: std::sync::Mutex::new(None),
        }
    }

    /// Stops reading the connection's next requests for `ms` (a throttle
    /// time returned to the client).
    pub fn throttle(&self, ms: i32) {
        if ms <= 0 {
            return;
        }
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(ms as u64);
        let mut slot = self.muted_until.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none_or(|u| u < until) {
            *slot = Some(until);
        }
    }

    /// When the connection may be read again, if it is muted.
    pub(super) fn muted_until(&self) -> Option<tokio::time::Instant> {
        let mut slot = self.muted_until.lock().unwrap_or_else(|e| e.into_inner());
        match *slot {
            Some(u) if u > tokio::time::Instant::now() => Some(u),
            _ => {
                *slot = None;
                None
            }
        }
    }

    /// Who the connection acts for.
    pub fn principal(&self) -> Arc<str> {
        self.principal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes the connection act for `principal` (after SASL).
    pub(super) fn set_principal(&self, principal: &str) {
        let mut slot = self.principal.lock().unwrap_or_else(|e| e.into_inner());
        if **slot != *principal {
            *slot = principal.into();
            // The purpose was decided for the principal before.
            *self.purpose.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// The purpose this connection's `client_id` declares, if its
    /// principal may declare it.
    pub fn purpose(
        &self,
        policies: &Policies,
        stored: &Arc<crate::security::grants::Granted>,
        client_id: &str,
    ) -> Decision {
        let version = Arc::as_ptr(stored) as usize;
        // std Mutex: held for a comparison and a clone, never across an await.
        let mut slot = self.purpose.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, v, decided)) = slot.as_ref()
            && id == client_id
            && *v == version
        {
            return decided.clone();
        }
        let principal = self.principal();
        let decided = policies.declared_granted(&principal, client_id, stored);
        if let Err(why) = &decided {
            tracing::warn!(
                target: "sluice::audit",
                principal = %principal,
                peer = %self.peer,
                client_id,
                reason = %why,
                "purpose refused: fetches answer TOPIC_AUTHORIZATION_FAILED"
            );
            metrics::counter!("sluice_purpose_refusals_total").increment(1);
        }
        *slot = Some((client_id.to_owned(), version, decided.clone()));
        decided
    }

    /// Whether the connection's principal may do `op` on a resource.
    pub async fn may(
        &self,
        broker: &crate::node::state::Broker,
        op: crate::security::acl::Operation,
        rtype: crate::security::acl::ResourceType,
        name: &str,
    ) -> bool {
        if !broker.authorizer.enabled() {
            return true;
        }
        broker
            .authorizer
            .allows(&self.principal(), self.peer.ip(), op, rtype, name)
            .await
    }

    /// As [`ConnContext::may`], for leaving a resource out of a listing
    /// (not audit-logged).
    pub async fn shows(
        &self,
        broker: &crate::node::state::Broker,
        op: crate::security::acl::Operation,
        rtype: crate::security::acl::ResourceType,
        name: &str,
    ) -> bool {
        !broker.authorizer.enabled()
            || broker
                .authorizer
                .shows(&self.principal(), self.peer.ip(), op, rtype, name)
                .await
    }

    /// Whether the principal may do `op` on the cluster.
    pub async fn may_on_cluster(
        &self,
        broker: &crate::node::state::Broker,
        op: crate::security::acl::Operation,
    ) -> bool {
        self.may(
            broker,
            op,
            crate::security::acl::ResourceType::Cluster,
            crate::security::acl::CLUSTER_NAME,
        )
        .await
    }

    /// True the first time the connection reads `topic`.
    pub fn first_read_of(&self, topic: &str) -> bool {
        let mut seen = self.read_topics.lock().unwrap_or_else(|e| e.into_inner());
        !seen.contains(topic) && seen.insert(topic.to_owned())
    }
}
