//! Startup and ordered shutdown of the broker process.
//!
//! Shutdown order (SIGTERM or Ctrl-C): stop accepting connections; stop
//! reading new requests; let in-flight requests finish, so queued produce
//! batches are flushed and acknowledged; then stop the flusher and close the
//! metadata store.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::coordinator::groups::Coordinator;
use crate::kafka::connection;
use crate::log::append::Appender;
use crate::log::retention;
use crate::node::config::Config;
use crate::node::state::{Broker, Parts, SharedBroker};
use crate::store::meta::MetaStore;
use crate::store::objects::Segments;

const MAX_CONNECTIONS: usize = 10_000;
/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Certificate files are read before anything starts, so a bad one is
    // reported at once.
    let security = config.security.clone();
    let acceptor = security
        .tls
        .as_ref()
        .filter(|_| security.listeners.iter().any(|l| l.protocol.tls()))
        .map(crate::security::tls::acceptor)
        .transpose()?;
    // Every address is taken before the broker registers, so a port conflict
    // names all the taken addresses and leaves no registration behind.
    let mut ports = Ports::bind(&config)?;
    let meta = MetaStore::connect(&config.metadata_url)
        .await
        .with_context(|| format!("cannot open the metadata store at {}", config.metadata_url))?;
    let store_config = object_store_config(&config);
    let segments = open_segments(&config, &store_config).await?;
    let cluster_id = meta.cluster_id().await?;
    let cluster = crate::cluster::Cluster::join(
        meta.clone(),
        crate::cluster::LiveBroker {
            id: config.broker_id,
            host: config.advertised_host.clone(),
            port: config.advertised_port,
        },
        config.broker_session_timeout,
        config.broker_heartbeat_interval,
    )
    .await
    .context("cannot register this broker in the metadata store")?;
    let membership_stop = CancellationToken::new();
    let membership = tokio::spawn(cluster.clone().run(membership_stop.clone()));
    // A start that fails from here on leaves the cluster again, so the broker
    // id is free for the next attempt at once.
    let lake = match open_lakehouse(&config, &store_config, &meta).await {
        Ok(lake) => lake,
        Err(e) => {
            membership_stop.cancel();
            let _ = membership.await;
            meta.close().await;
            return Err(e);
        }
    };

    let flusher_stop = CancellationToken::new();
    let (commits_tx, commits_rx) = watch::channel(0u64);
    let (appender, flusher) = Appender::start(
        meta.clone(),
        segments.clone(),
        commits_tx,
        cluster.placement_changes(),
        flusher_stop.clone(),
    );
    let background = CancellationToken::new();
    let groups = Coordinator::start(
        meta.clone(),
        cluster.clone(),
        config.group_initial_delay,
        background.clone(),
    );
    let registry = sluice_schema_registry::Registry::new(Arc::new(
        crate::store::schema_store::SqlSchemaStore::new(meta.clone()),
    ));
    let txns = crate::coordinator::transactions::Transactions::new(meta.clone(), appender.clone());
    let broker = Arc::new(Broker::new(Parts {
        lake: crate::log::read::LakeReader::new(lake.clone(), config.cache_bytes / 2),
        config: config.clone(),
        meta: meta.clone(),
        segments,
        appender,
        groups,
        txns: txns.clone(),
        validator: crate::policy::validation::Validator::new(registry.clone()),
        cluster_id: cluster_id.clone(),
        commits: commits_rx,
        cluster: cluster.clone(),
    }));

    crate::ops::http::metrics_handle();
    let http_stop = CancellationToken::new();
    let (http, registry_http) = serve_http(
        ports.http,
        ports.registry,
        &broker,
        &lake,
        &registry,
        &http_stop,
    )?;
    // The Kafka listeners accept last: a client that can connect finds the
    // registry and HTTP APIs up too.
    let mut listeners = Vec::new();
    for (l, socket) in security.listeners.iter().zip(ports.kafka.drain(..)) {
        let tls = if l.protocol.tls() {
            acceptor.clone()
        } else {
            None
        };
        listeners.push((socket, l.clone(), tls));
    }
    let upkeep = tokio::spawn(crate::ops::http::metrics_upkeep(background.clone()));
    let retention = tokio::spawn(retention::run(
        broker.meta.clone(),
        broker.segments.clone(),
        broker.cluster.clone(),
        broker.config.retention_check,
        background.clone(),
    ));
    let transactions = tokio::spawn(crate::coordinator::transactions::run(
        txns,
        broker.cluster.clone(),
        background.clone(),
    ));
    let checkpoints = tokio::spawn(retention::checkpoints(
        broker.meta.clone(),
        background.clone(),
    ));
    let archiver = tokio::spawn(crate::lake::archiver::run(
        broker.clone(),
        lake.clone(),
        config.table_commit_interval,
        background.clone(),
    ));

    announce(&config, &cluster_id);

    let connections = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let conn_stop = CancellationToken::new();
    let accepting = TaskTracker::new();
    for (socket, listener, tls) in listeners {
        accepting.spawn(accept_loop(Accept {
            socket: listen(socket)?,
            listener,
            tls,
            broker: broker.clone(),
            limit: limit.clone(),
            connections: connections.clone(),
            conn_stop: conn_stop.clone(),
            shutdown: shutdown.clone(),
        }));
    }
    accepting.close();
    accepting.wait().await;

    tracing::info!("shutting down: finishing in-flight requests");
    conn_stop.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}");
    }
    flusher_stop.cancel();
    let _ = flusher.await;
    background.cancel();
    let _ = retention.await;
    let _ = transactions.await;
    let _ = archiver.await;
    let _ = upkeep.await;
    http_stop.cancel();
    let _ = http.await;
    let _ = registry_http.await;
    let _ = checkpoints.await;
    // Leaving the cluster frees this broker's leases for the others at once.
    membership_stop.cancel();
    let _ = membership.await;
    meta.close().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// The HTTP endpoint (Iceberg REST catalog, SQL, admin, health, metrics)
/// and the schema registry API, each behind `--http-auth`.
fn serve_http(
    http_socket: TcpSocket,
    registry_socket: TcpSocket,
    broker: &SharedBroker,
    lake: &Arc<sluice_lakehouse::Lakehouse>,
    registry: &sluice_schema_registry::Registry,
    stop: &CancellationToken,
) -> anyhow::Result<(JoinHandle<()>, JoinHandle<()>)> {
    use crate::ops::http;
    let catalog = http::guard_catalog(
        sluice_lakehouse::rest::router(Arc::new(lake.catalog().clone())),
        broker.clone(),
    );
    let main = http::serve(
        listen(http_socket)?,
        http::protect(http::router(broker.clone()).merge(catalog), broker.clone()),
        "HTTP endpoint (Iceberg REST catalog, health, metrics)",
        stop.clone(),
    );
    let registry = http::serve(
        listen(registry_socket)?,
        http::protect(registry.router(), broker.clone()),
        "schema registry API",
        stop.clone(),
    );
    Ok((main, registry))
}

/// The segment store: local files, or an S3 API bucket.
async fn open_segments(
    config: &Config,
    store_config: &sluice_lakehouse::storage::ObjectStoreConfig,
) -> anyhow::Result<Segments> {
    if config.object_store_url.starts_with("file://") {
        Segments::open(&config.object_store_url, config.cache_bytes)
    } else {
        Segments::open_store(store_config, config.cache_bytes).await
    }
    .with_context(|| {
        format!(
            "cannot open the object store at {} (check the bucket name, --s3-endpoint and the AWS_* credentials)",
            config.object_store_url
        )
    })
}

/// Logs each Kafka listener and that the broker is ready, with a warning
/// where clients are not authenticated.
fn announce(config: &Config, cluster_id: &str) {
    let security = &config.security;
    for l in &security.listeners {
        tracing::info!(
            protocol = l.protocol.name(),
            addr = %l.addr,
            advertised = %format!("{}:{}", l.advertised_host, l.advertised_port),
            "Kafka listener{}",
            if l.authenticates(security.tls.as_ref()) {
                ""
            } else {
                " (unauthenticated: clients are User:ANONYMOUS)"
            }
        );
    }
    tracing::info!(
        kafka = %config.kafka_addr,
        advertised = %format!("{}:{}", config.advertised_host, config.advertised_port),
        data_dir = %config.data_dir.display(),
        cluster_id = %cluster_id,
        "sluice broker ready{}",
        if security.any_authentication() {
            ""
        } else {
            " (no authentication configured: bind to trusted networks only)"
        }
    );
}

/// The sockets a broker listens on, bound before it joins the cluster so
/// that a taken address fails startup early. They listen only when the
/// broker is ready: until then a client's connect is refused, so "the port
/// accepts" still means "the broker serves".
struct Ports {
    http: TcpSocket,
    registry: TcpSocket,
    /// One per configured Kafka listener, in the same order.
    kafka: Vec<TcpSocket>,
}

/// Backlog of every listening socket (the kernel caps it at somaxconn).
const BACKLOG: u32 = 1024;

/// A socket bound to `addr` that does not listen yet.
fn reserve(addr: std::net::SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As every server does: a restarted broker may bind while connections
    // of its previous run sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Starts listening on a reserved socket.
fn listen(socket: TcpSocket) -> anyhow::Result<TcpListener> {
    let addr = socket.local_addr()?;
    socket
        .listen(BACKLOG)
        .with_context(|| format!("cannot listen on {addr}"))
}

impl Ports {
    /// Binds every address; when some are taken, the error lists them all.
    fn bind(config: &Config) -> anyhow::Result<Ports> {
        let mut problems = Vec::new();
        let mut take = |addr: std::net::SocketAddr, what: &str| match reserve(addr) {
            Ok(socket) => Some(socket),
            Err(e) => {
                problems.push(format!("{addr} ({what}): {e}"));
                None
            }
        };
        let http = take(config.http_addr, "HTTP endpoint, --http-addr");
        let registry = take(config.registry_addr, "schema registry API, --registry-addr");
        let mut kafka = Vec::new();
        for l in &config.security.listeners {
            kafka.push(take(l.addr, "Kafka listener, --kafka-addr or --listeners"));
        }
        match (http, registry) {
            (Some(http), Some(registry)) if problems.is_empty() => Ok(Ports {
                http,
                registry,
                kafka: kafka.into_iter().flatten().collect(),
            }),
            _ => anyhow::bail!(
                "cannot listen on {} (is another broker running? choose other addresses)",
                problems.join("; ")
            ),
        }
    }
}

/// One listener's accept loop and what its connections need.
struct Accept {
    socket: TcpListener,
    listener: crate::security::settings::Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    broker: Arc<Broker>,
    limit: Arc<Semaphore>,
    connections: TaskTracker,
    conn_stop: CancellationToken,
    shutdown: CancellationToken,
}

/// Accepts connections until shutdown; the socket closes when it returns.
async fn accept_loop(a: Accept) {
    loop {
        let permit = tokio::select! {
            p = a.limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = a.shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            r = a.socket.accept() => r,
            _ = a.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Usually too many open files: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let broker = a.broker.clone();
        let stop = a.conn_stop.clone();
        let protocol = a.listener.protocol;
        let tls = a.tls.clone();
        a.connections.spawn(async move {
            match tls {
                None => connection::serve(broker, stream, peer, protocol, None, stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(crate::security::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            // With --tls-client-ca, an SSL client is the
                            // subject of its (verified) certificate.
                            let cert = tls_stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first());
                            let principal = match cert {
                                Some(c) if protocol == crate::security::settings::Protocol::Ssl => {
                                    match crate::security::tls::principal_of(c) {
                                        Some(p) => Some(p),
                                        None => {
                                            tracing::warn!(%peer, "client certificate subject unreadable, closing connection");
                                            drop(permit);
                                            return;
                                        }
                                    }
                                }
                                _ => None,
                            };
                            if let Some(p) = &principal {
                                tracing::info!(%peer, principal = %p, "TLS client authenticated");
                            }
                            connection::serve(broker, tls_stream, peer, protocol, principal, stop)
                                .await
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("sluice_tls_handshake_failures_total").increment(1);
                            tracing::warn!(
                                %peer,
                                listener = protocol.name(),
                                error = %e,
                                "TLS handshake failed, closing connection (a plaintext client on a TLS listener?)"
                            );
                        }
                        Err(_) => {
                            metrics::counter!("sluice_tls_handshake_failures_total").increment(1);
                            tracing::warn!(
                                %peer,
                                listener = protocol.name(),
                                "TLS handshake not finished within {:?}, closing connection",
                                crate::security::tls::HANDSHAKE_TIMEOUT
                            );
                        }
                    }
                }
            }
            drop(permit);
        });
    }
}

/// The object store settings of `--object-store-url` and the `--s3-*` flags.
pub fn object_store_config(config: &Config) -> sluice_lakehouse::storage::ObjectStoreConfig {
    let endpoint = config.s3_endpoint.clone();
    sluice_lakehouse::storage::ObjectStoreConfig {
        allow_http: endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://")),
        virtual_hosted_style: config.s3_path_style == Some(false),
        endpoint,
        region: config.s3_region.clone(),
        ..sluice_lakehouse::storage::ObjectStoreConfig::new(&config.object_store_url)
    }
}

/// The Iceberg catalog of topic tables, in the metadata database, with
/// table files under `DATA_DIR/warehouse` (embedded) or under
/// `warehouse/` of the object store.
async fn open_lakehouse(
    config: &Config,
    store: &sluice_lakehouse::storage::ObjectStoreConfig,
    meta: &MetaStore,
) -> anyhow::Result<Arc<sluice_lakehouse::Lakehouse>> {
    if !config.object_store_url.starts_with("file://") {
        let catalog = sluice_lakehouse::LakeCatalog::open(
            meta.pool().clone(),
            sluice_lakehouse::storage::object_file_io(store)?,
            store.warehouse(),
        )
        .await
        .context("cannot open the Iceberg catalog in the metadata store")?;
        return Ok(Arc::new(sluice_lakehouse::Lakehouse::new(
            catalog,
            &config.table_namespace,
        )?));
    }
    let dir = config.data_dir.join("warehouse");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the table directory {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let warehouse = format!("file://{}", dir.display());
    let catalog = sluice_lakehouse::LakeCatalog::open(
        meta.pool().clone(),
        sluice_lakehouse::local_file_io(),
        warehouse,
    )
    .await
    .context("cannot open the Iceberg catalog in the metadata store")?;
    Ok(Arc::new(sluice_lakehouse::Lakehouse::new(
        catalog,
        &config.table_namespace,
    )?))
}
