//! ApiVersions: the APIs and version ranges this broker serves.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::kafka::codec;

pub fn handle(_req: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = codec::api_versions();
    r
}
