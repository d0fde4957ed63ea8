//! Broker settings: command-line flags, `SLUICE_*` environment variables and
//! an optional TOML file, in that order of precedence, over built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

use crate::common::addr::{parse_addr, split_host_port};

/// Flags of `sluice serve`. Every flag also reads an environment variable and
/// a key of the same name (with `_` for `-`) in the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file; keys are the flag names with `_` (e.g. `kafka_addr`).
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded metadata database and object store.
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds to.
    #[arg(long, env = "SLUICE_KAFKA_ADDR", value_name = "HOST:PORT")]
    pub kafka_addr: Option<String>,
    /// Address given to clients in Metadata responses (defaults to --kafka-addr).
    #[arg(long, env = "SLUICE_ADVERTISED_ADDR", value_name = "HOST:PORT")]
    pub advertised_addr: Option<String>,
    /// Address of the Schema Registry API.
    #[arg(long, env = "SLUICE_REGISTRY_ADDR", value_name = "HOST:PORT")]
    pub registry_addr: Option<String>,
    /// Address of the HTTP API (Iceberg REST catalog, SQL, metrics, health).
    #[arg(long, env = "SLUICE_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Metadata store: `sqlite://PATH` (default: DATA_DIR/metadata.db) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` for many brokers.
    #[arg(long, env = "SLUICE_METADATA_URL", value_name = "URL")]
    pub metadata_url: Option<String>,
    /// Object store: `file://PATH` (default: DATA_DIR/objects) or
    /// `s3://BUCKET[/PREFIX]` (credentials from the standard AWS_* variables).
    #[arg(long, env = "SLUICE_OBJECT_STORE_URL", value_name = "URL")]
    pub object_store_url: Option<String>,
    /// This broker's id; every broker sharing a metadata store needs its own.
    #[arg(long, env = "SLUICE_BROKER_ID", value_name = "N")]
    pub broker_id: Option<i32>,
    /// A broker whose last heartbeat is older than this is taken for dead:
    /// its partitions, groups and archiving move to the others
    /// (Kafka's `broker.session.timeout.ms`).
    #[arg(long, env = "SLUICE_BROKER_SESSION_TIMEOUT_MS", value_name = "MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// How often a broker renews its heartbeat in the metadata store.
    #[arg(long, env = "SLUICE_BROKER_HEARTBEAT_INTERVAL_MS", value_name = "MS")]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// S3 API endpoint for `s3://` object stores that are not AWS itself
    /// (MinIO, Ceph, moto...). Defaults to AWS_ENDPOINT_URL, then AWS.
    #[arg(long, env = "SLUICE_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region (defaults to AWS_REGION, then us-east-1).
    #[arg(long, env = "SLUICE_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Address buckets as `https://host/bucket` rather than
    /// `https://bucket.host` (most S3-compatible servers want this).
    /// Defaults to true when an endpoint is given.
    #[arg(long, env = "SLUICE_S3_PATH_STYLE", value_name = "BOOL")]
    pub s3_path_style: Option<bool>,
    /// Create topics on first produce or metadata request, as Kafka's
    /// `auto.create.topics.enable`.
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics and of CreateTopics without a count
    /// (Kafka's `num.partitions`).
    #[arg(long, env = "SLUICE_DEFAULT_PARTITIONS", value_name = "N")]
    pub default_partitions: Option<i32>,
    /// Largest request frame accepted, in bytes (Kafka's `socket.request.max.bytes`).
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Memory for recently written and read segments, in bytes.
    #[arg(long, env = "SLUICE_CACHE_BYTES", value_name = "BYTES")]
    pub cache_bytes: Option<u64>,
    /// How often retention runs, in seconds.
    #[arg(long, env = "SLUICE_RETENTION_CHECK_SECS", value_name = "SECS")]
    pub retention_check_secs: Option<u64>,
    /// How long the first rebalance of an empty group waits for more members,
    /// in milliseconds (Kafka's `group.initial.rebalance.delay.ms`).
    #[arg(
        long,
        env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS",
        value_name = "MS"
    )]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// How often each topic's new records are committed to its Iceberg
    /// table, in milliseconds (the freshness of table reads).
    #[arg(long, env = "SLUICE_TABLE_COMMIT_INTERVAL_MS", value_name = "MS")]
    pub table_commit_interval_ms: Option<u64>,
    /// Iceberg namespace of topic tables (topic `T` is table `NAMESPACE.T`).
    #[arg(long, env = "SLUICE_TABLE_NAMESPACE", value_name = "NAME")]
    pub table_namespace: Option<String>,
    /// Field policies: purposes, their grants and sensitivity classes (TOML).
    #[arg(long, env = "SLUICE_POLICY_FILE", value_name = "FILE")]
    pub policy_file: Option<PathBuf>,
    /// Kafka listeners, `PROTOCOL://HOST:PORT` separated by commas, with
    /// PROTOCOL one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    /// (default: `PLAINTEXT://` on --kafka-addr).
    #[arg(long, env = "SLUICE_LISTENERS", value_name = "LIST")]
    pub listeners: Option<String>,
    /// Addresses given to clients per listener, `PROTOCOL://HOST:PORT,...`
    /// (default: each listener's own address).
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENERS", value_name = "LIST")]
    pub advertised_listeners: Option<String>,
    /// TLS certificate chain (PEM) of the SSL and SASL_SSL listeners.
    #[arg(long, env = "SLUICE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the SSL and SASL_SSL listeners.
    #[arg(long, env = "SLUICE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; with
    /// it, TLS clients must present one, and on an SSL listener the client
    /// is the principal `User:CN=<common name>`.
    #[arg(long, env = "SLUICE_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// SASL mechanisms offered, separated by commas
    /// (default: PLAIN,SCRAM-SHA-256,SCRAM-SHA-512).
    #[arg(long, env = "SLUICE_SASL_MECHANISMS", value_name = "LIST")]
    pub sasl_mechanisms: Option<String>,
    /// Clients must re-authenticate this often (Kafka's
    /// `connections.max.reauth.ms`; default 0: never).
    #[arg(long, env = "SLUICE_SASL_SESSION_LIFETIME_MS", value_name = "MS")]
    pub sasl_session_lifetime_ms: Option<u64>,
    /// `acl` enforces Kafka ACLs, `none` allows every request (default:
    /// `acl` when some listener or the HTTP interfaces authenticate).
    #[arg(long, env = "SLUICE_AUTHORIZER", value_name = "acl|none")]
    pub authorizer: Option<String>,
    /// Principals allowed everything, separated by `;` (e.g.
    /// `User:admin;User:CN=alice,O=Example`).
    #[arg(long, env = "SLUICE_SUPER_USERS", value_name = "LIST")]
    pub super_users: Option<String>,
    /// With the ACL authorizer, a resource no ACL mentions is open to all
    /// (Kafka's `allow.everyone.if.no.acl.found`; default false).
    #[arg(
        long,
        env = "SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
        value_name = "BOOL"
    )]
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// The HTTP interfaces (schema registry, REST catalog, SQL, admin)
    /// require basic or bearer credentials (default: true when some Kafka
    /// listener authenticates).
    #[arg(long, env = "SLUICE_HTTP_AUTH", value_name = "BOOL")]
    pub http_auth: Option<bool>,
    /// `/healthz`, `/readyz` and `/metrics` answer without credentials.
    #[arg(long, env = "SLUICE_HTTP_OPEN_HEALTH", value_name = "BOOL")]
    pub http_open_health: Option<bool>,
    /// Allow listeners and HTTP interfaces that do not authenticate to
    /// bind to non-loopback addresses (trusted networks only).
    #[arg(long, env = "SLUICE_ALLOW_INSECURE_NETWORK", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_insecure_network: Option<bool>,
    /// Shut down when the process with this id exits (for test harnesses
    /// and supervisors that may die without stopping the broker).
    #[arg(long, hide = true, value_name = "PID")]
    pub exit_with_parent: Option<u32>,
}

/// The config file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kafka_addr: Option<String>,
    advertised_addr: Option<String>,
    registry_addr: Option<String>,
    http_addr: Option<String>,
    metadata_url: Option<String>,
    object_store_url: Option<String>,
    broker_id: Option<i32>,
    broker_session_timeout_ms: Option<u64>,
    broker_heartbeat_interval_ms: Option<u64>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_path_style: Option<bool>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<i32>,
    max_request_bytes: Option<usize>,
    cache_bytes: Option<u64>,
    retention_check_secs: Option<u64>,
    group_initial_rebalance_delay_ms: Option<u64>,
    table_commit_interval_ms: Option<u64>,
    table_namespace: Option<String>,
    policy_file: Option<PathBuf>,
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    sasl_mechanisms: Option<String>,
    sasl_session_lifetime_ms: Option<u64>,
    authorizer: Option<String>,
    super_users: Option<String>,
    allow_everyone_if_no_acl_found: Option<bool>,
    http_auth: Option<bool>,
    http_open_health: Option<bool>,
    allow_insecure_network: Option<bool>,
}

/// Resolved broker settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub kafka_addr: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub registry_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub metadata_url: String,
    pub object_store_url: String,
    pub broker_id: i32,
    pub broker_session_timeout: Duration,
    pub broker_heartbeat_interval: Duration,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_path_style: Option<bool>,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub max_request_bytes: usize,
    pub cache_bytes: u64,
    pub retention_check: Duration,
    pub group_initial_delay: Duration,
    pub table_commit_interval: Duration,
    pub table_namespace: String,
    /// Purposes and grants from the policy file (none without one).
    pub policies: std::sync::Arc<crate::policy::purposes::Policies>,
    /// Listeners, TLS, SASL, authorizer and HTTP authentication.
    pub security: std::sync::Arc<crate::security::settings::Security>,
}

impl Config {
    /// Builds the settings from flags/env, then the config file, then defaults.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("sluice-data"));
        let kafka = args
            .kafka_addr
            .clone()
            .or(file.kafka_addr)
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        parse_addr("kafka-addr", &kafka)?;
        let advertised_addr = args.advertised_addr.clone().or(file.advertised_addr);
        if let Some(a) = &advertised_addr {
            split_host_port("advertised-addr", a)?;
        }
        let registry = args
            .registry_addr
            .clone()
            .or(file.registry_addr)
            .unwrap_or_else(|| "127.0.0.1:8081".into());
        let http = args
            .http_addr
            .clone()
            .or(file.http_addr)
            .unwrap_or_else(|| "127.0.0.1:8181".into());
        let metadata_url = args
            .metadata_url
            .clone()
            .or(file.metadata_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("metadata.db").display()));
        let object_store_url = args
            .object_store_url
            .clone()
            .or(file.object_store_url)
            .unwrap_or_else(|| format!("file://{}", data_dir.join("objects").display()));
        let default_partitions = args
            .default_partitions
            .or(file.default_partitions)
            .unwrap_or(1);
        if default_partitions < 1 {
            bail!("default-partitions must be at least 1, got {default_partitions}");
        }
        let max_request_bytes = args
            .max_request_bytes
            .or(file.max_request_bytes)
            .unwrap_or(100 * 1024 * 1024);
        if max_request_bytes < 1024 {
            bail!("max-request-bytes must be at least 1024, got {max_request_bytes}");
        }
        let table_namespace = args
            .table_namespace
            .clone()
            .or(file.table_namespace)
            .unwrap_or_else(|| "kafka".into());
        if table_namespace.is_empty()
            || !table_namespace
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            bail!(
                "table-namespace must be dot-separated names of letters, digits and _, got '{table_namespace}'"
            );
        }
        let table_commit_ms = args
            .table_commit_interval_ms
            .or(file.table_commit_interval_ms)
            .unwrap_or(1000);
        if table_commit_ms < 10 {
            bail!("table-commit-interval-ms must be at least 10, got {table_commit_ms}");
        }
        let session_ms = args
            .broker_session_timeout_ms
            .or(file.broker_session_timeout_ms)
            .unwrap_or(6000);
        let heartbeat_ms = args
            .broker_heartbeat_interval_ms
            .or(file.broker_heartbeat_interval_ms)
            .unwrap_or(1000);
        if heartbeat_ms < 10 || heartbeat_ms.saturating_mul(3) > session_ms {
            bail!(
                "broker-heartbeat-interval-ms ({heartbeat_ms}) must be at least 10 and at most a third of broker-session-timeout-ms ({session_ms})"
            );
        }
        let registry_addr = parse_addr("registry-addr", &registry)?;
        let http_addr = parse_addr("http-addr", &http)?;
        let security = crate::security::settings::SecurityInput {
            kafka_addr: kafka,
            advertised_addr,
            listeners: args.listeners.clone().or(file.listeners),
            advertised_listeners: args
                .advertised_listeners
                .clone()
                .or(file.advertised_listeners),
            tls_cert: args.tls_cert.clone().or(file.tls_cert),
            tls_key: args.tls_key.clone().or(file.tls_key),
            tls_client_ca: args.tls_client_ca.clone().or(file.tls_client_ca),
            sasl_mechanisms: args.sasl_mechanisms.clone().or(file.sasl_mechanisms),
            sasl_session_lifetime_ms: args
                .sasl_session_lifetime_ms
                .or(file.sasl_session_lifetime_ms),
            authorizer: args.authorizer.clone().or(file.authorizer),
            super_users: args.super_users.clone().or(file.super_users),
            allow_everyone_if_no_acl_found: args
                .allow_everyone_if_no_acl_found
                .or(file.allow_everyone_if_no_acl_found),
            http_auth: args.http_auth.or(file.http_auth),
            http_open_health: args.http_open_health.or(file.http_open_health),
            allow_insecure_network: args.allow_insecure_network.or(file.allow_insecure_network),
            http_addrs: vec![
                ("HTTP endpoint", http_addr),
                ("schema registry API", registry_addr),
            ],
        }
        .resolve()?;
        let first = &security.listeners[0];
        let (kafka_addr, advertised_host, advertised_port) = (
            first.addr,
            first.advertised_host.clone(),
            first.advertised_port,
        );
        let policy_file = args.policy_file.clone().or(file.policy_file);
        let policies = crate::policy::purposes::Policies::load(policy_file.as_deref())?;
        Ok(Config {
            policies: std::sync::Arc::new(policies),
            table_commit_interval: Duration::from_millis(table_commit_ms),
            table_namespace,
            data_dir,
            kafka_addr,
            advertised_host,
            advertised_port,
            security: std::sync::Arc::new(security),
            registry_addr,
            http_addr,
            metadata_url,
            object_store_url,
            broker_id: args.broker_id.or(file.broker_id).unwrap_or(1),
            broker_session_timeout: Duration::from_millis(session_ms),
            broker_heartbeat_interval: Duration::from_millis(heartbeat_ms),
            s3_endpoint: args.s3_endpoint.clone().or(file.s3_endpoint),
            s3_region: args.s3_region.clone().or(file.s3_region),
            s3_path_style: args.s3_path_style.or(file.s3_path_style),
            auto_create_topics: args
                .auto_create_topics
                .or(file.auto_create_topics)
                .unwrap_or(true),
            default_partitions,
            max_request_bytes,
            cache_bytes: args
                .cache_bytes
                .or(file.cache_bytes)
                .unwrap_or(256 * 1024 * 1024),
            retention_check: Duration::from_secs(
                args.retention_check_secs
                    .or(file.retention_check_secs)
                    .unwrap_or(30)
                    .max(1),
            ),
            group_initial_delay: Duration::from_millis(
                args.group_initial_rebalance_delay_ms
                    .or(file.group_initial_rebalance_delay_ms)
                    .unwrap_or(3000),
            ),
        })
    }
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "kafka_addr = \"127.0.0.1:19092\"\ndefault_partitions = 4\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            default_partitions: Some(8),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.kafka_addr.port(), 19092);
        assert_eq!(c.advertised_port, 19092);
        assert_eq!(c.default_partitions, 8);
        assert!(c.auto_create_topics);
        assert!(c.metadata_url.starts_with("sqlite://"));
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_name() {
        let args = ServeArgs {
            kafka_addr: Some("nonsense".into()),
            ..Default::default()
        };
        let err = Config::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("--kafka-addr"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "kafka_adr = \"x\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = format!("{:#}", Config::resolve(&args).unwrap_err());
        assert!(err.contains("kafka_adr"), "{err}");
    }
}
