//! One client connection: read frames, run handlers concurrently, write
//! responses in request order.
//!
//! ```text
//!  socket ─► reader ─► decode ─► handler task ─┐ oneshot
//!                      │                       ▼
//!                      └─ queue of pending responses (request order) ─► writer ─► socket
//! ```
//!
//! Clients pipeline requests; handling them concurrently keeps a slow fetch
//! (long poll) or produce (waiting for a flush) from stalling the requests
//! behind it, while the ordered queue keeps the protocol's response order.
//! Produce batches are queued for storage by the reader itself, before the
//! next request is read, so one connection's batches are stored in order.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use sluice_gateway::frame::read_frame;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};

use crate::kafka::codec::{self, Decoded};
use crate::kafka::handlers;
use crate::kafka::session::ConnContext;
use crate::node::state::SharedBroker;
use crate::security::sasl::{self, Session};

/// Requests one connection may have in flight before the reader waits.
const MAX_IN_FLIGHT: usize = 64;

/// A response slot: `None` means the request gets no response (acks=0).
type Slot = oneshot::Receiver<Option<Bytes>>;

pub async fn serve<S>(
    broker: SharedBroker,
    stream: S,
    peer: SocketAddr,
    listener: crate::security::settings::Protocol,
    principal: Option<String>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (slots_tx, slots_rx) = mpsc::channel::<Slot>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_responses(wr, slots_rx));
    let ctx = Arc::new(ConnContext::new(peer, listener));
    if let Some(p) = principal {
        ctx.set_principal(&p);
    }
    metrics::gauge!("sluice_connections").increment(1.0);
    let outcome = read_requests(&broker, rd, &ctx, slots_tx, &shutdown).await;
    match outcome {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(reason) => {
            metrics::counter!("sluice_connection_errors_total").increment(1);
            tracing::warn!(%peer, %reason, "closing connection");
        }
    }
    metrics::gauge!("sluice_connections").decrement(1.0);
    // The reader has stopped; the writer finishes the responses already owed.
    let _ = writer.await;
}

async fn read_requests<R: AsyncRead + Unpin>(
    broker: &SharedBroker,
    rd: R,
    ctx: &Arc<ConnContext>,
    slots: mpsc::Sender<Slot>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut session = Session::new(ctx.listener.sasl());
    let mut order = RequestOrder::default();
    loop {
        let max = session.max_frame(broker.config.max_request_bytes);
        let frame = tokio::select! {
            f = read_frame(&mut rd, max) => f.map_err(|e| {
                if session.authenticated() {
                    e.to_string()
                } else {
                    format!("before SASL authentication: {e}")
                }
            })?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let Some(frame) = frame else { return Ok(()) };
        if let Some(until) = ctx.muted_until() {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        let (tx, rx) = oneshot::channel();
        if slots.send(rx).await.is_err() {
            return Err("response writer stopped".into());
        }
        if session.expects_raw_token() {
            let (reply, next) = raw_sasl_token(broker, ctx, &mut session, frame).await;
            let _ = tx.send(reply);
            next?;
            continue;
        }
        match codec::decode_frame(frame) {
            Ok(Decoded::ApiVersionsTooNew { correlation_id }) => {
                let _ = tx.send(Some(codec::api_versions_fallback(correlation_id)));
            }
            Ok(Decoded::Request(req))
                if matches!(
                    req.api_key,
                    ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
                ) =>
            {
                let (resp, next) = sasl_request(broker, ctx, &mut session, req).await;
                let _ = tx.send(resp.map_err(|e| e.to_string())?);
                next?;
            }
            Ok(Decoded::Request(req)) => {
                tracing::trace!(api = ?req.api_key, version = req.version, correlation_id = req.correlation_id(), "request");
                session.admit(req.api_key)?;
                let api = req.api_key;
                let pending = handlers::start(broker.clone(), ctx.clone(), req).await;
                match pending {
                    Ok(fut) => {
                        let (after, done) = order.next(api);
                        tokio::spawn(async move {
                            if let Some(previous) = after {
                                // Resolves when the previous ordered request
                                // finished (or its task ended).
                                let _ = previous.await;
                            }
                            let result = fut.await;
                            drop(done);
                            match result {
                                Ok(resp) => {
                                    let _ = tx.send(resp);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "request failed; closing connection");
                                    drop(tx);
                                }
                            }
                        });
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Which of a connection's requests run one after another.
///
/// Requests are handled concurrently so that a pipelining client is not
/// held to one round trip per request, but a client may send a request
/// that depends on an earlier one before the earlier one is answered: two
/// asynchronous OffsetCommits for one partition, or an OffsetFetch right
/// after a commit. Kafka handles a connection's requests strictly in order,
/// so such a client expects the later one to win. Every request except
/// those that may wait for a long time or order themselves (Produce queues
/// its batches in connection order inside `handlers::start`; Fetch long
/// polls; JoinGroup and SyncGroup wait for the rest of the group) starts
/// only when the previous one of its kind has finished.
#[derive(Default)]
struct RequestOrder {
    /// Closed when the last ordered request finished.
    last: Option<oneshot::Receiver<()>>,
}

impl RequestOrder {
    /// What a request of `api` waits for before it runs, and the handle it
    /// drops when finished (for the next ordered request to wait on).
    fn next(
        &mut self,
        api: ApiKey,
    ) -> (Option<oneshot::Receiver<()>>, Option<oneshot::Sender<()>>) {
        if matches!(
            api,
            ApiKey::Produce | ApiKey::Fetch | ApiKey::JoinGroup | ApiKey::SyncGroup
        ) {
            return (None, None);
        }
        let (done, finished) = oneshot::channel();
        (self.last.replace(finished), Some(done))
    }
}

/// Answers SaslHandshake and SaslAuthenticate, which change the
/// connection's state and so run in the reader, in request order.
async fn sasl_request(
    broker: &SharedBroker,
    ctx: &ConnContext,
    session: &mut Session,
    req: codec::RequestFrame,
) -> (Result<Option<Bytes>, codec::CodecError>, sasl::Next) {
    let security = &broker.config.security;
    let corr = req.correlation_id();
    if req.api_key == ApiKey::SaslHandshake {
        let body = match req.decode::<SaslHandshakeRequest>() {
            Ok(b) => b,
            Err(e) => return (Err(e), Ok(())),
        };
        let (resp, next) = session.handshake(&security.sasl_mechanisms, body, req.version);
        return (
            codec::encode_response(corr, req.version, &resp).map(Some),
            next,
        );
    }
    let body = match req.decode::<SaslAuthenticateRequest>() {
        Ok(b) => b,
        Err(e) => return (Err(e), Ok(())),
    };
    let (resp, next, principal) = session
        .authenticate(
            &broker.credentials,
            security.sasl_session_lifetime,
            body,
            req.version,
        )
        .await;
    authenticated(ctx, principal);
    (
        codec::encode_response(corr, req.version, &resp).map(Some),
        next,
    )
}

fn authenticated(ctx: &ConnContext, principal: Option<String>) {
    if let Some(p) = principal {
        if ctx.principal().as_ref() == p {
            tracing::debug!(peer = %ctx.peer, principal = %p, "SASL re-authentication succeeded");
            metrics::counter!("sluice_sasl_reauthentications_total").increment(1);
        } else {
            tracing::info!(peer = %ctx.peer, principal = %p, "SASL authentication succeeded");
        }
        ctx.set_principal(&p);
    }
}

/// A bare SASL token (the exchange after a v0 SaslHandshake): the answer
/// is a bare length-prefixed token; a failure just closes the connection.
async fn raw_sasl_token(
    broker: &SharedBroker,
    ctx: &ConnContext,
    session: &mut Session,
    token: Bytes,
) -> (Option<Bytes>, sasl::Next) {
    let mut req = SaslAuthenticateRequest::default();
    req.auth_bytes = token;
    let (resp, next, principal) = session
        .authenticate(
            &broker.credentials,
            broker.config.security.sasl_session_lifetime,
            req,
            0,
        )
        .await;
    if next.is_err() {
        return (None, next);
    }
    authenticated(ctx, principal);
    let mut out = bytes::BytesMut::with_capacity(4 + resp.auth_bytes.len());
    out.extend_from_slice(&(resp.auth_bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&resp.auth_bytes);
    (Some(out.freeze()), next)
}

async fn write_responses<W: AsyncWrite + Unpin>(wr: W, mut slots: mpsc::Receiver<Slot>) {
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(slot) = slots.recv().await {
        match slot.await {
            Ok(Some(bytes)) => {
                if wr.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            // The handler failed without a response: the protocol offers no
            // way to skip one, so the connection must close.
            Err(_) => break,
        }
        if slots.is_empty() && wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}
