//! The `sluice` command.

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// mimalloc reserves large blocks with MAP_NORESERVE, so a request that
/// declares an absurd array length (the protocol crate pre-allocates from the
/// declared count) costs address space, not memory, and fails to decode
/// instead of aborting the process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use sluice_broker::cli::{GatewayArgs, GroupsCmd, HttpTarget, TableCmd, TopicsCmd};
use sluice_broker::node::config::{Config, ServeArgs};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Kafka-compatible broker that stores topics in object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (embedded defaults: data under ./sluice-data, Kafka on 127.0.0.1:9092).
    Serve(Box<ServeArgs>),
    /// Inspect and manage topics on a running broker.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// Inspect consumer groups (members, committed offsets, lag).
    #[command(subcommand)]
    Groups(GroupsCmd),
    /// Manage SCRAM users (for SASL/SCRAM, SASL/PLAIN and HTTP basic auth).
    #[command(subcommand)]
    Users(sluice_broker::cli::access::UsersCmd),
    /// Grant purposes to principals (who may declare which purpose).
    #[command(subcommand)]
    Purposes(sluice_broker::cli::access::PurposesCmd),
    /// Manage Kafka ACLs (enforced with `sluice serve --authorizer acl`).
    #[command(subcommand)]
    Acls(sluice_broker::cli::access::AclsCmd),
    /// Inspect transactions (state, producer, partitions, age).
    #[command(subcommand)]
    Transactions(sluice_broker::cli::transactions::TransactionsCmd),
    /// Manage client quotas (produce/fetch byte rates per user and client id).
    #[command(subcommand)]
    Quotas(sluice_broker::cli::quotas::QuotasCmd),
    /// Run a read-only SQL query over the topic tables of a running broker
    /// (e.g. `sluice sql "SELECT count(*) FROM orders"`).
    Sql {
        /// The statement; tables are `kafka.TOPIC` or just `TOPIC`.
        statement: String,
        /// Read for this purpose: fields it may not see are left out,
        /// masked or hashed, as for a Kafka consumer declaring it.
        #[arg(long, value_name = "NAME")]
        purpose: Option<String>,
        #[command(flatten)]
        target: HttpTarget,
    },
    /// Maintain topic tables (compaction, snapshot expiry).
    #[command(subcommand)]
    Table(TableCmd),
    /// Run a Kafka proxy in front of any Kafka-compatible cluster that
    /// validates produced records against a schema registry.
    Gateway(Box<GatewayArgs>),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let config = Config::resolve(&args)?;
                let shutdown = CancellationToken::new();
                tokio::spawn(wait_for_signal(shutdown.clone()));
                if let Some(pid) = args.exit_with_parent {
                    tokio::spawn(exit_with_parent(pid, shutdown.clone()));
                }
                sluice_broker::ops::server::run(config, shutdown).await
            }
            Command::Gateway(args) => {
                let shutdown = CancellationToken::new();
                tokio::spawn(wait_for_signal(shutdown.clone()));
                if let Some(pid) = args.exit_with_parent {
                    tokio::spawn(exit_with_parent(pid, shutdown.clone()));
                }
                sluice_broker::cli::gateway(*args, shutdown).await
            }
            Command::Topics(cmd) => sluice_broker::cli::topics(cmd).await,
            Command::Groups(cmd) => sluice_broker::cli::groups(cmd).await,
            Command::Users(cmd) => sluice_broker::cli::access::users(cmd).await,
            Command::Acls(cmd) => sluice_broker::cli::access::acls(cmd).await,
            Command::Quotas(cmd) => sluice_broker::cli::quotas::quotas(cmd).await,
            Command::Transactions(cmd) => sluice_broker::cli::transactions::transactions(cmd).await,
            Command::Purposes(cmd) => sluice_broker::cli::access::purposes(cmd).await,
            Command::Table(cmd) => sluice_broker::cli::tables(cmd).await,
            Command::Sql {
                statement,
                purpose,
                target,
            } => sluice_broker::cli::sql(&statement, purpose.as_deref(), &target).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Starts an orderly shutdown once process `pid` is gone.
async fn exit_with_parent(pid: u32, shutdown: CancellationToken) {
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if !proc_dir.exists() {
            tracing::info!(pid, "parent process exited; shutting down");
            shutdown.cancel();
            return;
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
    shutdown.cancel();
}
