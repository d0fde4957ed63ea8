use std::net::SocketAddr;

/// Why the gateway, a listener or one proxied connection stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The upstream broker could not be reached.
    #[error("cannot connect to upstream broker {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// A socket read or write failed.
    #[error("{side} {what} failed: {source}")]
    Io {
        side: Side,
        what: &'static str,
        source: std::io::Error,
    },
    /// A frame declared a size outside what the gateway accepts.
    #[error(
        "{side} sent a frame of {len} bytes, outside 0..={max} (socket.request.max.bytes); is this a Kafka peer?"
    )]
    FrameSize { side: Side, len: i64, max: usize },
    /// The peer closed the connection inside a frame.
    #[error("{side} closed the connection inside a {len}-byte frame")]
    Truncated { side: Side, len: usize },
    /// A frame could not be decoded.
    #[error("cannot decode {what} from {side}: {reason}")]
    Decode {
        side: Side,
        what: String,
        reason: String,
    },
    /// A message could not be encoded (a field out of range for its version).
    #[error("cannot encode {what}: {reason}")]
    Encode { what: String, reason: String },
    /// The upstream answered out of order.
    #[error("upstream answered correlation id {got}, expected {expected}")]
    Correlation { expected: i32, got: i32 },
    /// The upstream closed the connection while responses were still owed.
    #[error("upstream closed the connection with {owed} response(s) still owed")]
    UpstreamClosed { owed: usize },
    /// The gateway's configuration cannot work.
    #[error("invalid gateway configuration: {0}")]
    Config(String),
    /// An address in the configuration does not parse.
    #[error("invalid address '{addr}': {reason}")]
    Address { addr: String, reason: String },
}

/// Which end of a proxied connection a failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        })
    }
}
