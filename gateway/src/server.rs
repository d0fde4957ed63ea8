//! Listeners: the bootstrap listener and one listener per upstream broker.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection;
use crate::error::GatewayError;
use crate::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::policy::RecordPolicy;

/// How the gateway listens and where it forwards.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The bootstrap listener; node listeners bind on the same host.
    pub kafka_addr: SocketAddr,
    /// The host given to clients for every listener.
    pub advertised_host: String,
    /// The bootstrap port given to clients; node `N` is advertised (and
    /// listened on) at `advertised_port + 1 + N`.
    pub advertised_port: u16,
    /// Bootstrap address of the upstream cluster, `HOST:PORT`.
    pub upstream: String,
    /// Largest frame accepted from a client or the upstream.
    pub max_frame_bytes: usize,
}

impl GatewayConfig {
    /// A configuration listening (and advertising) `kafka_addr`, forwarding to `upstream`.
    pub fn new(kafka_addr: SocketAddr, upstream: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            kafka_addr,
            advertised_host: kafka_addr.ip().to_string(),
            advertised_port: kafka_addr.port(),
            upstream: upstream.into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }

    /// The gateway port of upstream node `node_id`, if it fits in a port number.
    pub fn node_port(&self, node_id: i32) -> Option<u16> {
        let port = i64::from(self.advertised_port) + 1 + i64::from(node_id);
        u16::try_from(port).ok().filter(|p| *p != 0)
    }
}

/// A node listener: the upstream broker it forwards to.
struct Node {
    upstream: Arc<Mutex<String>>,
    port: u16,
}

/// State shared by every listener and connection of one gateway.
pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) policy: Arc<dyn RecordPolicy>,
    advertised_host: StrBytes,
    listen_ip: IpAddr,
    nodes: Mutex<HashMap<i32, Node>>,
    /// Node ids already reported as unusable, so each is logged once.
    refused_nodes: Mutex<Vec<i32>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Shared {
    /// The gateway address to advertise for upstream node `node_id` at
    /// `host:port`, binding its listener first if this is the first time
    /// the node is seen. `None` when the node cannot be given a listener
    /// (its port would overflow, or binding failed): the caller leaves the
    /// node out of its answer rather than send a client upstream.
    pub(crate) fn advertise(
        self: &Arc<Self>,
        node_id: i32,
        host: &str,
        port: i32,
    ) -> Option<(StrBytes, i32)> {
        let target = format!("{host}:{port}");
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = nodes.get(&node_id) {
            let mut upstream = node.upstream.lock().unwrap_or_else(|p| p.into_inner());
            if *upstream != target {
                tracing::info!(node_id, from = %upstream, to = %target, "upstream broker moved");
                *upstream = target;
            }
            return Some((self.advertised_host.clone(), i32::from(node.port)));
        }
        let Some(gateway_port) = (node_id >= 0)
            .then(|| self.config.node_port(node_id))
            .flatten()
        else {
            self.refuse_node(node_id, || {
                format!(
                    "upstream node id {node_id} ({target}) has no gateway port: advertised port {} + 1 + {node_id} is not a valid port; leaving it out of answers",
                    self.config.advertised_port
                )
            });
            return None;
        };
        let addr = SocketAddr::new(self.listen_ip, gateway_port);
        let listener = match std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .and_then(TcpListener::from_std)
        {
            Ok(l) => l,
            Err(e) => {
                // Not remembered: a later answer naming the node tries again.
                tracing::error!(node_id, %addr, upstream = %target, error = %e, "cannot listen for upstream node; leaving it out of this answer");
                return None;
            }
        };
        tracing::info!(node_id, listen = %addr, upstream = %target, "listening for upstream node");
        let upstream = Arc::new(Mutex::new(target));
        nodes.insert(
            node_id,
            Node {
                upstream: upstream.clone(),
                port: gateway_port,
            },
        );
        let shared = self.clone();
        self.tasks.spawn(async move {
            accept_loop(shared, listener, Target::Node(upstream)).await;
        });
        Some((self.advertised_host.clone(), i32::from(gateway_port)))
    }

    fn refuse_node(&self, node_id: i32, message: impl FnOnce() -> String) {
        let mut refused = self.refused_nodes.lock().unwrap_or_else(|p| p.into_inner());
        if !refused.contains(&node_id) {
            refused.push(node_id);
            tracing::error!("{}", message());
        }
    }
}

/// Where a listener's connections go.
#[derive(Clone)]
enum Target {
    /// The configured bootstrap address.
    Bootstrap(String),
    /// One upstream node, at its latest known address.
    Node(Arc<Mutex<String>>),
}

impl Target {
    fn addr(&self) -> String {
        match self {
            Target::Bootstrap(a) => a.clone(),
            Target::Node(a) => a.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// A running gateway's bootstrap listener, bound and ready to serve.
pub struct Gateway {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Gateway {
    /// Binds the bootstrap listener.
    pub async fn bind(
        config: GatewayConfig,
        policy: Arc<dyn RecordPolicy>,
        shutdown: CancellationToken,
    ) -> Result<Gateway, GatewayError> {
        if config.upstream.trim().is_empty() {
            return Err(GatewayError::Config("no upstream address".into()));
        }
        let listener = TcpListener::bind(config.kafka_addr)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: config.kafka_addr,
                source,
            })?;
        let shared = Arc::new(Shared {
            advertised_host: StrBytes::from_string(config.advertised_host.clone()),
            listen_ip: config.kafka_addr.ip(),
            config,
            policy,
            nodes: Mutex::new(HashMap::new()),
            refused_nodes: Mutex::new(Vec::new()),
            shutdown,
            tasks: TaskTracker::new(),
        });
        Ok(Gateway { shared, listener })
    }

    /// The bound bootstrap address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the shutdown token is cancelled, then waits for open
    /// connections to finish the responses they owe.
    pub async fn serve(self) {
        let Gateway { shared, listener } = self;
        tracing::info!(
            listen = %shared.config.kafka_addr,
            advertised = %format!("{}:{}", shared.config.advertised_host, shared.config.advertised_port),
            upstream = %shared.config.upstream,
            "gateway listening"
        );
        let target = Target::Bootstrap(shared.config.upstream.clone());
        accept_loop(shared.clone(), listener, target).await;
        shared.tasks.close();
        shared.tasks.wait().await;
        tracing::info!("gateway stopped");
    }
}

/// Binds and serves a gateway until `shutdown` is cancelled.
pub async fn run(
    config: GatewayConfig,
    policy: Arc<dyn RecordPolicy>,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    Gateway::bind(config, policy, shutdown).await?.serve().await;
    Ok(())
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, target: Target) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let shared2 = shared.clone();
                let upstream = target.addr();
                shared.tasks.spawn(async move {
                    connection::proxy(shared2, stream, peer, upstream).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

impl Shared {
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ports_follow_the_advertised_port_and_refuse_overflow() {
        let mut config = GatewayConfig::new("127.0.0.1:9092".parse().unwrap(), "upstream:9092");
        assert_eq!(config.node_port(0), Some(9093));
        assert_eq!(config.node_port(1), Some(9094));
        assert_eq!(config.node_port(65535 - 9093), Some(65535));
        assert_eq!(config.node_port(65536 - 9093), None);
        assert_eq!(config.node_port(i32::MAX), None);
        config.advertised_port = 19092;
        assert_eq!(config.node_port(3), Some(19096));
    }
}
