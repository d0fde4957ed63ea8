//! One client connection, proxied over one upstream connection.
//!
//! ```text
//!  client ─► reader ─► (check / rewrite request) ─► upstream
//!              │ one entry per request, in request order
//!              ▼
//!            queue ─► writer ◄─ upstream responses (same order)
//!                       │ transform
//!                       ▼
//!                     client
//! ```
//!
//! Correlation ids pass through unchanged, since each client connection
//! has its own upstream connection. Kafka answers a connection's requests
//! in order, so the writer pairs each queued entry with the next upstream
//! response (checking its correlation id) or with the gateway's own answer
//! for a request it did not forward. An acks=0 Produce queues nothing: the
//! upstream sends no response to it either.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{GatewayError, Side};
use crate::frame::{encode_frame, read_frame, request_prefix, response_correlation_id};
use crate::policy::ProduceRefusal;
use crate::rewrite::{self, MAX_API_VERSIONS_VERSION, Transform};
use crate::server::Shared;

/// Requests one connection may have in flight before the reader waits.
const MAX_IN_FLIGHT: usize = 64;

/// What the writer owes the client for one request.
enum Entry {
    /// The next upstream response, transformed.
    Upstream {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        transform: Transform,
    },
    /// An answer the gateway made itself (length-prefixed).
    Local(Bytes),
}

/// Proxies one client connection to `upstream` until either side closes.
pub(crate) async fn proxy(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    upstream: String,
) {
    let server = match TcpStream::connect(&upstream).await {
        Ok(s) => s,
        Err(source) => {
            let e = GatewayError::Connect {
                addr: upstream,
                source,
            };
            tracing::warn!(%peer, reason = %e, "closing client connection");
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    let (queue, entries) = mpsc::channel::<Entry>(MAX_IN_FLIGHT);
    // Stops the reader when the writer fails (the upstream went away).
    let stop = shared.shutdown().child_token();
    let writer = tokio::spawn(write_responses(
        shared.clone(),
        client_wr,
        server_rd,
        entries,
        stop.clone(),
    ));
    let read = read_requests(&shared, client_rd, server_wr, queue, &stop).await;
    let written = writer.await.unwrap_or(Ok(()));
    for outcome in [read, written] {
        if let Err(reason) = outcome {
            tracing::warn!(%peer, %upstream, %reason, "closing client connection");
            return;
        }
    }
    tracing::debug!(%peer, "client connection closed");
}

async fn read_requests(
    shared: &Arc<Shared>,
    client: OwnedReadHalf,
    server: OwnedWriteHalf,
    queue: mpsc::Sender<Entry>,
    stop: &CancellationToken,
) -> Result<(), GatewayError> {
    let mut client = BufReader::with_capacity(64 * 1024, client);
    let mut server = BufWriter::with_capacity(64 * 1024, server);
    let max = shared.config.max_frame_bytes;
    let mut purpose_warned = false;
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut client, max) => f.map_err(|e| e.from_side(Side::Client))?,
            _ = stop.cancelled() => return Ok(()),
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        let prefix = request_prefix(&frame).ok_or_else(|| GatewayError::Decode {
            side: Side::Client,
            what: "request header".into(),
            reason: format!("a frame of {} bytes is too short for one", frame.len()),
        })?;
        let api = ApiKey::try_from(prefix.api_key).ok();
        let (forward, entry) = match api {
            Some(ApiKey::Produce) => produce(shared, frame, prefix.version).await?,
            Some(ApiKey::ApiVersions) if prefix.version > MAX_API_VERSIONS_VERSION => (
                None,
                Some(Entry::Local(rewrite::api_versions_too_new(
                    prefix.correlation_id,
                )?)),
            ),
            Some(api) => {
                let transform = match api {
                    ApiKey::ApiVersions => Transform::ApiVersions,
                    ApiKey::Metadata => Transform::Metadata,
                    ApiKey::FindCoordinator => Transform::FindCoordinator,
                    ApiKey::DescribeCluster => Transform::DescribeCluster,
                    ApiKey::Fetch => {
                        let purpose = fetch_purpose(shared, &frame, prefix.version)?;
                        if let Err(reason) = &purpose
                            && !purpose_warned
                        {
                            purpose_warned = true;
                            tracing::warn!(%reason, "declared purpose refused; fetches answer TOPIC_AUTHORIZATION_FAILED");
                        }
                        Transform::Fetch { purpose }
                    }
                    _ => Transform::None,
                };
                check_version(api, prefix.version, &transform)?;
                (
                    Some(frame),
                    Some(Entry::Upstream {
                        api,
                        version: prefix.version,
                        correlation_id: prefix.correlation_id,
                        transform,
                    }),
                )
            }
            // Never offered in ApiVersions: the gateway cannot tell whether
            // its answer would need rewriting.
            None => {
                return Err(GatewayError::Decode {
                    side: Side::Client,
                    what: "request header".into(),
                    reason: format!("unknown API key {}", prefix.api_key),
                });
            }
        };
        // Queue the entry before forwarding, so the writer always knows
        // what the next upstream response answers.
        if let Some(entry) = entry
            && queue.send(entry).await.is_err()
        {
            return Ok(());
        }
        if let Some(frame) = forward {
            // The client id goes on as the client sent it, `purpose=` item
            // included: an upstream that applies policies of its own (a
            // Sluice broker) must redact for the same purpose, or it would
            // take away what the purpose may see before the gateway gets it.
            let io = |source| GatewayError::Io {
                side: Side::Upstream,
                what: "write",
                source,
            };
            server
                .write_all(&(frame.len() as u32).to_be_bytes())
                .await
                .map_err(io)?;
            server.write_all(&frame).await.map_err(io)?;
            // Flush when the client has nothing more buffered, so pipelined
            // requests travel together.
            if client.buffer().is_empty() {
                server.flush().await.map_err(io)?;
            }
        }
    }
}

/// Refuses a request whose answer the gateway would have to rewrite but
/// cannot decode at that version (the client ignored ApiVersions).
fn check_version(api: ApiKey, version: i16, transform: &Transform) -> Result<(), GatewayError> {
    let range = api.valid_versions();
    let max = match api {
        ApiKey::Fetch => rewrite::MAX_FETCH_VERSION,
        _ => range.max,
    };
    if matches!(transform, Transform::None) || (range.min..=max).contains(&version) {
        return Ok(());
    }
    Err(GatewayError::Decode {
        side: Side::Client,
        what: format!("{api:?} request"),
        reason: format!(
            "version {version} is not proxied (supported: {}..={max})",
            range.min
        ),
    })
}

fn request_header(
    frame: &mut Bytes,
    api: ApiKey,
    version: i16,
) -> Result<RequestHeader, GatewayError> {
    RequestHeader::decode(frame, api.request_header_version(version)).map_err(|e| {
        GatewayError::Decode {
            side: Side::Client,
            what: format!("{api:?} v{version} request header"),
            reason: e.to_string(),
        }
    })
}

/// The purpose a Fetch request's client declares.
fn fetch_purpose(
    shared: &Arc<Shared>,
    frame: &Bytes,
    version: i16,
) -> Result<Result<Option<String>, String>, GatewayError> {
    let mut buf = frame.clone();
    let header = request_header(&mut buf, ApiKey::Fetch, version)?;
    let client_id = header.client_id.as_deref().unwrap_or("");
    Ok(shared.policy.purpose(client_id))
}

/// Checks a Produce request's partitions. Returns the frame to forward (the
/// original, or one without the refused partitions) and what the client is
/// owed.
async fn produce(
    shared: &Arc<Shared>,
    frame: Bytes,
    version: i16,
) -> Result<(Option<Bytes>, Option<Entry>), GatewayError> {
    let api = ApiKey::Produce;
    if !(api.valid_versions().min..=rewrite::MAX_PRODUCE_VERSION).contains(&version) {
        return Err(GatewayError::Decode {
            side: Side::Client,
            what: "Produce request".into(),
            reason: format!(
                "version {version} is not proxied (supported: {}..={})",
                api.valid_versions().min,
                rewrite::MAX_PRODUCE_VERSION
            ),
        });
    }
    let mut body = frame.clone();
    let header = request_header(&mut body, api, version)?;
    let mut request =
        ProduceRequest::decode(&mut body, version).map_err(|e| GatewayError::Decode {
            side: Side::Client,
            what: format!("Produce v{version} request"),
            reason: e.to_string(),
        })?;
    let mut refused: Vec<(TopicName, PartitionProduceResponse)> = Vec::new();
    let mut kept_partitions = 0usize;
    for topic in &mut request.topic_data {
        let name = topic.name.0.to_string();
        let mut kept = Vec::with_capacity(topic.partition_data.len());
        for p in std::mem::take(&mut topic.partition_data) {
            let check = match &p.records {
                Some(records) if !records.is_empty() => {
                    shared.policy.check_produce(&name, p.index, records).await
                }
                // Nothing to check; the upstream answers as it sees fit.
                _ => Ok(()),
            };
            match check {
                Ok(()) => kept.push(p),
                Err(refusal) => {
                    tracing::info!(topic = %name, partition = p.index, error_code = refusal.error_code, reason = %refusal.message, "refused produce partition");
                    refused.push((topic.name.clone(), refused_partition(p.index, refusal)));
                }
            }
        }
        kept_partitions += kept.len();
        topic.partition_data = kept;
    }
    request.topic_data.retain(|t| !t.partition_data.is_empty());
    let correlation_id = header.correlation_id;
    let answers = request.acks != 0;
    if refused.is_empty() {
        // Before v10 a Produce answer names no broker: nothing to rewrite.
        let transform = if version >= 10 {
            Transform::Produce { refused }
        } else {
            Transform::None
        };
        let entry = answers.then_some(Entry::Upstream {
            api,
            version,
            correlation_id,
            transform,
        });
        return Ok((Some(frame), entry));
    }
    if kept_partitions == 0 {
        let entry = if answers {
            Some(Entry::Local(rewrite::produce_refused(
                correlation_id,
                version,
                refused,
            )?))
        } else {
            None
        };
        return Ok((None, entry));
    }
    let encoded = encode_frame(
        &header,
        api.request_header_version(version),
        &request,
        version,
    )
    .map_err(|reason| GatewayError::Encode {
        what: format!("Produce v{version} request"),
        reason,
    })?;
    // The forwarded frame goes without the length prefix the encoder added.
    let forward = encoded.slice(4..);
    let entry = answers.then_some(Entry::Upstream {
        api,
        version,
        correlation_id,
        transform: Transform::Produce { refused },
    });
    Ok((Some(forward), entry))
}

fn refused_partition(index: i32, refusal: ProduceRefusal) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default();
    p.index = index;
    p.error_code = refusal.error_code;
    p.base_offset = -1;
    p.log_append_time_ms = -1;
    p.log_start_offset = -1;
    p.error_message = Some(StrBytes::from_string(refusal.message));
    p.record_errors = refusal
        .record_errors
        .into_iter()
        .map(|(index, message)| {
            let mut e = BatchIndexAndErrorMessage::default();
            e.batch_index = index;
            e.batch_index_error_message = Some(StrBytes::from_string(message));
            e
        })
        .collect();
    p
}

async fn write_responses(
    shared: Arc<Shared>,
    client: OwnedWriteHalf,
    server: OwnedReadHalf,
    mut entries: mpsc::Receiver<Entry>,
    stop: CancellationToken,
) -> Result<(), GatewayError> {
    let result = match write_loop(&shared, client, server, &mut entries).await {
        // The client went away while being answered: a normal disconnect.
        Err(GatewayError::Io {
            side: Side::Client,
            source,
            ..
        }) if crate::frame::is_disconnect(&source) => Ok(()),
        other => other,
    };
    // The reader has nothing left to forward once answers cannot be sent.
    stop.cancel();
    result
}

async fn write_loop(
    shared: &Arc<Shared>,
    client: OwnedWriteHalf,
    server: OwnedReadHalf,
    entries: &mut mpsc::Receiver<Entry>,
) -> Result<(), GatewayError> {
    let mut client = BufWriter::with_capacity(64 * 1024, client);
    let mut server = BufReader::with_capacity(64 * 1024, server);
    let max = shared.config.max_frame_bytes;
    let io = |source| GatewayError::Io {
        side: Side::Client,
        what: "write",
        source,
    };
    while let Some(entry) = entries.recv().await {
        let out = match entry {
            Entry::Local(bytes) => bytes,
            Entry::Upstream {
                api,
                version,
                correlation_id,
                transform,
            } => {
                let Some(frame) = read_frame(&mut server, max)
                    .await
                    .map_err(|e| e.from_side(Side::Upstream))?
                else {
                    return Err(GatewayError::UpstreamClosed {
                        owed: entries.len() + 1,
                    });
                };
                let got = response_correlation_id(&frame).unwrap_or(-1);
                if got != correlation_id {
                    return Err(GatewayError::Correlation {
                        expected: correlation_id,
                        got,
                    });
                }
                match transform {
                    // Large fetches and the like go on without a copy.
                    Transform::None => {
                        client
                            .write_all(&(frame.len() as u32).to_be_bytes())
                            .await
                            .map_err(io)?;
                        frame
                    }
                    transform => rewrite::apply(shared, api, version, transform, frame).await?,
                }
            }
        };
        client.write_all(&out).await.map_err(io)?;
        if entries.is_empty() {
            client.flush().await.map_err(io)?;
        }
    }
    client.flush().await.map_err(io)?;
    let _ = client.shutdown().await;
    Ok(())
}
