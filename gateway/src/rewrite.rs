//! Rewrites of upstream responses: broker addresses become gateway
//! addresses, refused produce partitions are merged back in, fetched records
//! are redacted, and ApiVersions is capped to what the gateway can rewrite.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeClusterResponse, FetchResponse,
    FindCoordinatorResponse, MetadataResponse, ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::{GatewayError, Side};
use crate::frame::{encode_response, with_length};
use crate::policy::TOPIC_AUTHORIZATION_FAILED;
use crate::server::Shared;

/// The highest Fetch version proxied: v13+ names topics by id only.
pub const MAX_FETCH_VERSION: i16 = 12;
/// The highest Produce version proxied: v12+ may name topics by id.
pub const MAX_PRODUCE_VERSION: i16 = 11;
/// The highest ApiVersions version the gateway decodes.
pub const MAX_API_VERSIONS_VERSION: i16 = 4;

/// APIs never offered to clients: their answers carry broker addresses the
/// gateway does not rewrite, or they talk to controllers rather than brokers.
const WITHHELD: &[ApiKey] = &[
    ApiKey::DescribeQuorum,
    ApiKey::ShareFetch,
    ApiKey::ShareAcknowledge,
];

const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// What to do with an upstream response before it goes to the client.
#[derive(Debug)]
pub(crate) enum Transform {
    /// Send it on byte for byte.
    None,
    /// Cap the API list.
    ApiVersions,
    /// Rewrite broker addresses.
    Metadata,
    FindCoordinator,
    DescribeCluster,
    /// Add the partitions the gateway refused; rewrite leader endpoints.
    Produce {
        refused: Vec<(TopicName, PartitionProduceResponse)>,
    },
    /// Redact each partition's records for the connection's purpose, or
    /// withhold them all when the declared purpose was refused.
    Fetch {
        purpose: Result<Option<String>, String>,
    },
}

/// Applies `transform` to one upstream response frame (without its length
/// prefix) and returns the frame to send, with its length prefix.
pub(crate) async fn apply(
    shared: &Arc<Shared>,
    api: ApiKey,
    version: i16,
    transform: Transform,
    frame: Bytes,
) -> Result<Bytes, GatewayError> {
    let header_version = api.response_header_version(version);
    match transform {
        Transform::None => Ok(with_length(&frame)),
        Transform::ApiVersions => {
            // An upstream that does not speak the requested version answers
            // in v0 (KIP-511); decode that too.
            let (h, mut r, v) = match decode::<ApiVersionsResponse>(api, version, frame.clone()) {
                Ok((h, r)) => (h, r, version),
                Err(e) => match decode::<ApiVersionsResponse>(api, 0, frame) {
                    Ok((h, r)) => (h, r, 0),
                    Err(_) => return Err(e),
                },
            };
            cap_api_versions(&mut r.api_keys);
            encode(&h, header_version, &r, api, v)
        }
        Transform::Metadata => {
            let (h, mut r) = decode::<MetadataResponse>(api, version, frame)?;
            r.brokers
                .retain_mut(|b| readdress(shared, b.node_id.0, &mut b.host, &mut b.port));
            encode(&h, header_version, &r, api, version)
        }
        Transform::DescribeCluster => {
            let (h, mut r) = decode::<DescribeClusterResponse>(api, version, frame)?;
            r.brokers
                .retain_mut(|b| readdress(shared, b.broker_id.0, &mut b.host, &mut b.port));
            encode(&h, header_version, &r, api, version)
        }
        Transform::FindCoordinator => {
            let (h, mut r) = decode::<FindCoordinatorResponse>(api, version, frame)?;
            if version >= 4 {
                for c in &mut r.coordinators {
                    if c.error_code != 0 {
                        continue;
                    }
                    if !readdress(shared, c.node_id.0, &mut c.host, &mut c.port) {
                        c.error_code = COORDINATOR_NOT_AVAILABLE;
                        c.node_id = BrokerId(-1);
                        c.host = StrBytes::default();
                        c.port = -1;
                    }
                }
            } else if r.error_code == 0 && !readdress(shared, r.node_id.0, &mut r.host, &mut r.port)
            {
                r.error_code = COORDINATOR_NOT_AVAILABLE;
                r.node_id = BrokerId(-1);
                r.host = StrBytes::default();
                r.port = -1;
            }
            encode(&h, header_version, &r, api, version)
        }
        Transform::Produce { refused } => {
            let (h, mut r) = decode::<ProduceResponse>(api, version, frame)?;
            r.node_endpoints
                .retain_mut(|n| readdress(shared, n.node_id.0, &mut n.host, &mut n.port));
            merge_refused(&mut r, refused);
            encode(&h, header_version, &r, api, version)
        }
        Transform::Fetch { purpose } => {
            let (h, mut r) = decode::<FetchResponse>(api, version, frame)?;
            redact(shared, &mut r, purpose).await;
            encode(&h, header_version, &r, api, version)
        }
    }
}

fn decode<T: Decodable>(
    api: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<(ResponseHeader, T), GatewayError> {
    let what = || format!("{api:?} v{version} response");
    let header =
        ResponseHeader::decode(&mut frame, api.response_header_version(version)).map_err(|e| {
            GatewayError::Decode {
                side: Side::Upstream,
                what: what(),
                reason: e.to_string(),
            }
        })?;
    let body = T::decode(&mut frame, version).map_err(|e| GatewayError::Decode {
        side: Side::Upstream,
        what: what(),
        reason: e.to_string(),
    })?;
    Ok((header, body))
}

fn encode<T: Encodable>(
    header: &ResponseHeader,
    header_version: i16,
    body: &T,
    api: ApiKey,
    version: i16,
) -> Result<Bytes, GatewayError> {
    crate::frame::encode_frame(header, header_version, body, version).map_err(|reason| {
        GatewayError::Encode {
            what: format!("{api:?} v{version} response"),
            reason,
        }
    })
}

/// Keeps the APIs and versions the gateway can decode and rewrite.
pub(crate) fn cap_api_versions(list: &mut Vec<ApiVersion>) {
    list.retain_mut(|v| {
        let Ok(key) = ApiKey::try_from(v.api_key) else {
            return false;
        };
        if WITHHELD.contains(&key) {
            return false;
        }
        let range = key.valid_versions();
        let mut max = v.max_version.min(range.max);
        match key {
            ApiKey::Fetch => max = max.min(MAX_FETCH_VERSION),
            ApiKey::Produce => max = max.min(MAX_PRODUCE_VERSION),
            ApiKey::ApiVersions => max = max.min(MAX_API_VERSIONS_VERSION),
            _ => {}
        }
        v.min_version = v.min_version.max(range.min);
        v.max_version = max;
        v.min_version <= v.max_version
    });
}

/// The answer to an ApiVersions request newer than the gateway decodes
/// (KIP-511): v0, UNSUPPORTED_VERSION, and the ApiVersions range, so the
/// client retries with a version the gateway understands.
pub(crate) fn api_versions_too_new(correlation_id: i32) -> Result<Bytes, GatewayError> {
    let mut r = ApiVersionsResponse::default();
    r.error_code = 35;
    let mut v = ApiVersion::default();
    v.api_key = ApiKey::ApiVersions as i16;
    v.min_version = 0;
    v.max_version = MAX_API_VERSIONS_VERSION;
    r.api_keys.push(v);
    encode_response(correlation_id, 0, &r, 0).map_err(|reason| GatewayError::Encode {
        what: "ApiVersions v0 response".into(),
        reason,
    })
}

/// The gateway's own answer to a Produce request whose every partition it
/// refused.
pub(crate) fn produce_refused(
    correlation_id: i32,
    version: i16,
    refused: Vec<(TopicName, PartitionProduceResponse)>,
) -> Result<Bytes, GatewayError> {
    let mut r = ProduceResponse::default();
    merge_refused(&mut r, refused);
    encode_response(
        correlation_id,
        ApiKey::Produce.response_header_version(version),
        &r,
        version,
    )
    .map_err(|reason| GatewayError::Encode {
        what: format!("Produce v{version} response"),
        reason,
    })
}

fn merge_refused(r: &mut ProduceResponse, refused: Vec<(TopicName, PartitionProduceResponse)>) {
    for (name, partition) in refused {
        match r.responses.iter_mut().find(|t| t.name == name) {
            Some(t) => t.partition_responses.push(partition),
            None => {
                let mut t = TopicProduceResponse::default();
                t.name = name;
                t.partition_responses.push(partition);
                r.responses.push(t);
            }
        }
    }
}

async fn redact(
    shared: &Arc<Shared>,
    r: &mut FetchResponse,
    purpose: Result<Option<String>, String>,
) {
    let purpose = match purpose {
        Ok(p) => p,
        Err(_) => {
            for t in &mut r.responses {
                for p in &mut t.partitions {
                    p.error_code = TOPIC_AUTHORIZATION_FAILED;
                    p.records = Some(Bytes::new());
                }
            }
            return;
        }
    };
    for t in &mut r.responses {
        let topic = t.topic.0.as_str();
        for p in &mut t.partitions {
            let Some(records) = p.records.take() else {
                continue;
            };
            if records.is_empty() || p.error_code != 0 {
                p.records = Some(records);
                continue;
            }
            match shared
                .policy
                .redact_fetch(topic, p.partition_index, records, purpose.as_deref())
                .await
            {
                Ok(records) => p.records = Some(records),
                Err(refusal) => {
                    tracing::warn!(
                        topic,
                        partition = p.partition_index,
                        error_code = refusal.error_code,
                        reason = %refusal.message,
                        "fetched records withheld"
                    );
                    p.error_code = refusal.error_code;
                    p.records = Some(Bytes::new());
                }
            }
        }
    }
}

/// Points one advertised broker address at the gateway. False when the
/// node cannot be served through the gateway (see `Shared::advertise`).
fn readdress(shared: &Arc<Shared>, node: i32, host: &mut StrBytes, port: &mut i32) -> bool {
    match shared.advertise(node, host, *port) {
        Some((h, p)) => {
            *host = h;
            *port = p;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(key: ApiKey, min: i16, max: i16) -> ApiVersion {
        let mut v = ApiVersion::default();
        v.api_key = key as i16;
        v.min_version = min;
        v.max_version = max;
        v
    }

    #[test]
    fn caps_versions_to_what_the_gateway_rewrites() {
        let mut list = vec![
            api(ApiKey::Produce, 0, 13),
            api(ApiKey::Fetch, 0, 17),
            api(ApiKey::Metadata, 0, 99),
            api(ApiKey::DescribeQuorum, 0, 2),
            api(ApiKey::ApiVersions, 0, 9),
        ];
        let mut unknown = ApiVersion::default();
        unknown.api_key = 9999;
        list.push(unknown);
        cap_api_versions(&mut list);
        let got: Vec<(i16, i16, i16)> = list
            .iter()
            .map(|v| (v.api_key, v.min_version, v.max_version))
            .collect();
        assert_eq!(
            got,
            vec![
                (ApiKey::Produce as i16, 3, 11),
                (ApiKey::Fetch as i16, 4, 12),
                (ApiKey::Metadata as i16, 0, 13),
                (ApiKey::ApiVersions as i16, 0, 4),
            ]
        );
    }

    #[test]
    fn a_refused_request_is_answered_at_its_version() {
        for version in [3, 8, 11] {
            let mut p = PartitionProduceResponse::default();
            p.index = 2;
            p.error_code = 87;
            p.error_message = Some(StrBytes::from_static_str("bad"));
            let topic = TopicName(StrBytes::from_static_str("t"));
            let frame = produce_refused(9, version, vec![(topic, p)]).unwrap();
            let (h, r) =
                decode::<ProduceResponse>(ApiKey::Produce, version, frame.slice(4..)).unwrap();
            assert_eq!(h.correlation_id, 9);
            let got = &r.responses[0].partition_responses[0];
            assert_eq!((got.index, got.error_code), (2, 87));
            let message = got.error_message.as_deref();
            assert_eq!(message, (version >= 8).then_some("bad"), "v{version}");
        }
    }

    #[test]
    fn refused_partitions_join_their_topic() {
        let mut r = ProduceResponse::default();
        let mut t = TopicProduceResponse::default();
        t.name = TopicName(StrBytes::from_static_str("a"));
        t.partition_responses
            .push(PartitionProduceResponse::default());
        r.responses.push(t);
        let mut refused = PartitionProduceResponse::default();
        refused.index = 1;
        refused.error_code = 87;
        merge_refused(
            &mut r,
            vec![
                (TopicName(StrBytes::from_static_str("a")), refused.clone()),
                (TopicName(StrBytes::from_static_str("b")), refused),
            ],
        );
        assert_eq!(r.responses.len(), 2);
        assert_eq!(r.responses[0].partition_responses.len(), 2);
        assert_eq!(r.responses[1].partition_responses[0].error_code, 87);
    }
}
