//! `HOST:PORT` flags, parsed with errors that name the flag.

use std::net::SocketAddr;

use anyhow::{Context, bail};

/// `value` resolved to one socket address, for a listener to bind.
pub fn parse_addr(flag: &str, value: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("--{flag}: '{value}' is not a HOST:PORT address"))
}

/// `value` split into the host and port a client is told to connect to
/// (not resolved: an advertised name may resolve only on the client).
pub fn split_host_port(flag: &str, value: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = value
        .rsplit_once(':')
        .with_context(|| format!("--{flag}: '{value}' is not a HOST:PORT address"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--{flag}: '{port}' is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--{flag}: '{value}' has no host");
    }
    Ok((host.to_string(), port as i32))
}
