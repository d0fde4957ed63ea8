//! [`Gateway`] runs the real `sluice gateway` binary as a child process in
//! front of an upstream cluster (in the tests, a Sluice broker).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::ThreadedProducer;

use crate::{DeliveryLog, STARTUP_TIMEOUT, sluice_bin};

/// Node ids whose gateway ports are kept free next to the bootstrap port.
const NODE_PORTS: u16 = 4;

/// A `sluice gateway` child process, killed when dropped.
pub struct Gateway {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

/// A loopback port `p` such that `p..=p + extra` were all free a moment ago.
fn free_port_run(extra: u16) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = first.local_addr().expect("local_addr").port();
        let Some(last) = port.checked_add(extra) else {
            continue;
        };
        let rest: Result<Vec<_>, _> = (port + 1..=last)
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect();
        if rest.is_ok() {
            return port;
        }
    }
    panic!("no run of {} free loopback ports found", extra + 1);
}

impl Gateway {
    /// Starts a gateway forwarding to `upstream` and validating against the
    /// registry at `registry_url`. Panics (with the gateway log) on failure.
    pub fn start(upstream: &str, registry_url: &str) -> Gateway {
        Gateway::try_start(upstream, registry_url, &[])
            .unwrap_or_else(|e| panic!("failed to start sluice gateway: {e:#}"))
    }

    /// Like [`Gateway::start`] with extra `sluice gateway` arguments.
    pub fn try_start(upstream: &str, registry_url: &str, args: &[&str]) -> anyhow::Result<Gateway> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-gateway-test-")
            .tempdir()
            .context("create temp dir")?;
        let port = free_port_run(NODE_PORTS);
        let mut gateway = Gateway {
            dir,
            port,
            child: None,
        };
        let log = crate::open_log(&gateway.log_path(), "sluice gateway start")?;
        let mut cmd = crate::sluice_command(&sluice_bin()?);
        cmd.env("NO_COLOR", "1")
            .arg("gateway")
            .arg("--upstream")
            .arg(upstream)
            .arg("--kafka-addr")
            .arg(gateway.bootstrap())
            .arg("--registry-url")
            .arg(registry_url)
            .arg("--exit-with-parent")
            .arg(std::process::id().to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        gateway.child = Some(cmd.spawn().context("spawn sluice gateway")?);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = gateway.addr();
        loop {
            if let Some(status) = gateway
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                gateway.child = None;
                bail!(
                    "sluice gateway exited during startup with {status}\n--- gateway log ---\n{}",
                    gateway.log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(gateway);
            }
            if Instant::now() > deadline {
                bail!(
                    "sluice gateway did not accept connections on {addr} within {STARTUP_TIMEOUT:?}\n--- gateway log ---\n{}",
                    gateway.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port` of the bootstrap listener.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Socket address of the bootstrap listener.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The gateway port serving upstream node `node_id`.
    pub fn node_port(&self, node_id: i32) -> u16 {
        (i32::from(self.port) + 1 + node_id) as u16
    }

    /// The file that collects the gateway's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    /// The whole gateway log so far.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// A client configuration pointing at the gateway only.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", self.bootstrap())
            .set("broker.address.family", "v4");
        cfg
    }

    /// A producer through the gateway whose delivery reports are recorded.
    pub fn producer(&self, extra: &[(&str, &str)]) -> ThreadedProducer<DeliveryLog> {
        crate::producer_from(self.client_config(), extra)
    }

    /// A consumer through the gateway meant for `assign()`, as
    /// [`crate::Broker::consumer`].
    pub fn consumer(&self, extra: &[(&str, &str)]) -> BaseConsumer {
        crate::consumer_from(self.client_config(), "sluice-gateway-tests", extra)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- sluice gateway log ---\n{}\n--- end of gateway log ---",
                self.log()
            );
        }
    }
}
