//! Kafka wire framing: size-prefixed frames to typed requests and back. No I/O.
//!
//! A frame is a big-endian i32 length followed by the request header and body.
//! Which header version applies depends on the API key and version, so the
//! key and version are peeked before the header is decoded.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader, api_versions_response::ApiVersion,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// The APIs and versions this broker implements, advertised in ApiVersions.
/// Each range is within what the codec supports and what the handler serves.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::DescribeTransactions, 0, 0),
    // Transaction versions up to those of transaction.version 1: the
    // client adds partitions with AddPartitionsToTxn (KIP-890 part 2's
    // implicit adds are not offered).
    (ApiKey::AddPartitionsToTxn, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::EndTxn, 0, 4),
];

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {0} bytes is too short for a request header")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("cannot decode {what}: {source}")]
    Decode { what: String, source: anyhow::Error },
}

/// A decoded request header and its still-encoded body.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
}

impl RequestFrame {
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    /// Decodes the body as `T`.
    pub fn decode<T: Decodable>(&self) -> Result<T, CodecError> {
        let mut body = self.body.clone();
        T::decode(&mut body, self.version).map_err(|source| CodecError::Decode {
            what: format!("{:?} v{} request", self.api_key, self.version),
            source,
        })
    }
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Decoded {
    Request(RequestFrame),
    /// An ApiVersions request newer than we speak (KIP-511): answer in v0
    /// with UNSUPPORTED_VERSION and our ranges so the client can retry.
    ApiVersionsTooNew {
        correlation_id: i32,
    },
}

/// Decodes one frame (without its length prefix).
pub fn decode_frame(frame: Bytes) -> Result<Decoded, CodecError> {
    if frame.len() < 8 {
        return Err(CodecError::Short(frame.len()));
    }
    let mut peek = &frame[..];
    let key = peek.get_i16();
    let version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let api_key = ApiKey::try_from(key).map_err(|_| CodecError::UnknownApiKey(key))?;
    let Some((min, max)) = supported_range(api_key) else {
        return Err(CodecError::UnsupportedVersion {
            api: api_key,
            version,
            min: 0,
            max: -1,
        });
    };
    if api_key == ApiKey::ApiVersions && version > max {
        return Ok(Decoded::ApiVersionsTooNew { correlation_id });
    }
    if version < min || version > max {
        return Err(CodecError::UnsupportedVersion {
            api: api_key,
            version,
            min,
            max,
        });
    }
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version)).map_err(
        |source| CodecError::Decode {
            what: "request header".into(),
            source,
        },
    )?;
    Ok(Decoded::Request(RequestFrame {
        api_key,
        version,
        header,
        body: buf,
    }))
}

/// Encodes a response with its header and length prefix.
pub fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<Bytes, CodecError> {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let header_version = R::header_version(version);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let wrap = |source| CodecError::Decode {
        what: "response (encode)".into(),
        source,
    };
    header.encode(&mut buf, header_version).map_err(wrap)?;
    response.encode(&mut buf, version).map_err(wrap)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Our ApiVersions list.
pub fn api_versions() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *lo;
            v.max_version = *hi;
            v
        })
        .collect()
}

/// The KIP-511 answer to an ApiVersions request of an unknown version:
/// a v0 response carrying UNSUPPORTED_VERSION and the supported ranges.
pub fn api_versions_fallback(correlation_id: i32) -> Bytes {
    let mut r = ApiVersionsResponse::default();
    r.error_code = ResponseError::UnsupportedVersion.code();
    r.api_keys = api_versions();
    // Encoding a plain struct in v0 cannot fail.
    encode_response(correlation_id, 0, &r).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::StrBytes;

    fn frame(key: ApiKey, version: i16, body: impl Encodable) -> Bytes {
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = 7;
        h.client_id = Some(StrBytes::from_static_str("t"));
        let mut buf = BytesMut::new();
        h.encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_a_flexible_request() {
        let f = frame(ApiKey::ApiVersions, 3, ApiVersionsRequest::default());
        match decode_frame(f).unwrap() {
            Decoded::Request(r) => {
                assert_eq!(r.api_key, ApiKey::ApiVersions);
                assert_eq!(r.correlation_id(), 7);
                assert_eq!(r.header.client_id.as_deref(), Some("t"));
                r.decode::<ApiVersionsRequest>().unwrap();
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_new_api_versions_falls_back_to_v0() {
        let mut raw = BytesMut::new();
        raw.put_i16(ApiKey::ApiVersions as i16);
        raw.put_i16(99);
        raw.put_i32(42);
        raw.put_slice(b"garbage that is not a header");
        match decode_frame(raw.freeze()).unwrap() {
            Decoded::ApiVersionsTooNew { correlation_id } => assert_eq!(correlation_id, 42),
            other => panic!("{other:?}"),
        }
        let resp = api_versions_fallback(42);
        let mut body = resp.slice(4..);
        assert_eq!(body.get_i32(), 42);
        let decoded = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(decoded.error_code, 35);
        assert!(decoded.api_keys.iter().any(|k| k.api_key == 0));
        assert!(body.is_empty());
    }

    #[test]
    fn refuses_unknown_keys_and_versions() {
        let mut raw = BytesMut::new();
        raw.put_i16(999);
        raw.put_i16(0);
        raw.put_i32(1);
        assert!(matches!(
            decode_frame(raw.freeze()),
            Err(CodecError::UnknownApiKey(999))
        ));
        let mut raw = BytesMut::new();
        raw.put_i16(ApiKey::Metadata as i16);
        raw.put_i16(99);
        raw.put_i32(1);
        assert!(matches!(
            decode_frame(raw.freeze()),
            Err(CodecError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            decode_frame(Bytes::from_static(b"abc")),
            Err(CodecError::Short(3))
        ));
    }
}
