//! Kafka framing shared by the broker and the gateway: size-prefixed frames
//! read from a socket, and the few header fields the gateway needs to route
//! a frame without decoding its body.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{GatewayError, Side};

/// The default cap on one frame, as the broker's `--max-request-bytes`.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Why reading a frame failed, without saying which peer sent it.
#[derive(Debug)]
pub enum FrameError {
    /// The declared length is negative or above the cap.
    Size { len: i64, max: usize },
    /// The stream ended inside a frame of this length.
    Truncated { len: usize },
    /// A read failed.
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Size { len, max } => write!(
                f,
                "frame size {len} is outside 0..={max} (socket.request.max.bytes); is this a Kafka client?"
            ),
            FrameError::Truncated { len } => {
                write!(f, "connection ended inside a {len}-byte frame")
            }
            FrameError::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl FrameError {
    /// The gateway error for a frame read from `side`.
    pub fn from_side(self, side: Side) -> GatewayError {
        match self {
            FrameError::Size { len, max } => GatewayError::FrameSize { side, len, max },
            FrameError::Truncated { len } => GatewayError::Truncated { side, len },
            FrameError::Io(source) => GatewayError::Io {
                side,
                what: "read",
                source,
            },
        }
    }
}

/// Reads one length-prefixed frame (returned without its prefix).
/// `Ok(None)` is a clean end of stream, including a reset between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) if is_disconnect(&e) => return Ok(None),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > max {
        return Err(FrameError::Size {
            len: len as i64,
            max,
        });
    }
    // Memory grows with the bytes that actually arrive (a 4-byte header
    // claiming 100 MB reserves at most one step) and is never zero-filled.
    const STEP: usize = 1 << 20;
    let len = len as usize;
    let mut buf = BytesMut::with_capacity(len.min(STEP));
    while buf.len() < len {
        if buf.len() == buf.capacity() {
            buf.reserve((len - buf.len()).min(STEP));
        }
        let want = (len - buf.len()) as u64;
        match (&mut *rd).take(want).read_buf(&mut buf).await {
            Ok(0) => return Err(FrameError::Truncated { len }),
            Ok(_) => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(Some(buf.freeze()))
}

/// Whether an I/O error is the peer going away rather than a fault.
pub fn is_disconnect(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// The fixed start of every request header: API key, version, correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
}

/// Reads the fixed start of a request frame; `None` if it is too short.
pub fn request_prefix(frame: &[u8]) -> Option<RequestPrefix> {
    if frame.len() < 8 {
        return None;
    }
    let mut b = frame;
    Some(RequestPrefix {
        api_key: b.get_i16(),
        version: b.get_i16(),
        correlation_id: b.get_i32(),
    })
}

/// The correlation id at the start of a response frame.
pub fn response_correlation_id(frame: &[u8]) -> Option<i32> {
    let mut b = frame.get(..4)?;
    Some(b.get_i32())
}

/// Encodes `header` (in `header_version`) and `body` (in `version`) as one
/// frame with its length prefix.
pub fn encode_frame<H: Encodable, B: Encodable>(
    header: &H,
    header_version: i16,
    body: &B,
    version: i16,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| e.to_string())?;
    body.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| "frame exceeds 2 GiB".to_owned())?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Encodes a response body with a header carrying `correlation_id`.
pub fn encode_response<B: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &B,
    version: i16,
) -> Result<Bytes, String> {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    encode_frame(&header, header_version, body, version)
}

/// Prefixes an already-encoded frame with its length.
pub fn with_length(frame: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(frame.len() + 4);
    buf.put_i32(frame.len() as i32);
    buf.put_slice(frame);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_refuses_bad_sizes() {
        let mut input: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c'];
        let f = read_frame(&mut input, 10).await.unwrap().unwrap();
        assert_eq!(&f[..], b"abc");
        assert!(read_frame(&mut input, 10).await.unwrap().is_none());

        let mut big: &[u8] = &[0, 0, 0, 11];
        assert!(matches!(
            read_frame(&mut big, 10).await,
            Err(FrameError::Size { len: 11, max: 10 })
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut negative, 10).await,
            Err(FrameError::Size { len: -1, .. })
        ));
        let mut short: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 10).await,
            Err(FrameError::Truncated { len: 5 })
        ));
    }

    #[test]
    fn peeks_request_prefix() {
        let frame = [0, 1, 0, 12, 0, 0, 0, 42, 0xff];
        let p = request_prefix(&frame).unwrap();
        assert_eq!((p.api_key, p.version, p.correlation_id), (1, 12, 42));
        assert!(request_prefix(&frame[..7]).is_none());
        assert_eq!(response_correlation_id(&frame[4..]), Some(42));
    }
}
