//! Malformed and hostile input: raw sockets with broken frames, unknown
//! topics with auto-creation disabled, and oversized batches. The broker must
//! reject the bad request without disturbing anybody else.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use rdkafka::admin::ResourceSpecifier;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, Timestamp};
use sluice_tests::{Broker, OP_TIMEOUT, Rec, block_on};

use crate::common::{Dec, assert_all_acked, produce_all};
use crate::raw::{
    Reply, connect, frame, produce_v3_body, produce_v3_result, read_reply, record_batch,
};

/// Expects either a closed connection or a response to `correlation_id`.
fn expect_rejected(stream: &mut TcpStream, correlation_id: i32, what: &str) {
    match read_reply(stream) {
        Reply::Closed => {}
        Reply::Frame(f) => {
            let corr = i32::from_be_bytes(f[..4].try_into().unwrap());
            assert_eq!(corr, correlation_id, "{what}: response to another request");
        }
    }
}

fn expect_closed(stream: &mut TcpStream, what: &str) {
    match read_reply(stream) {
        Reply::Closed => {}
        Reply::Frame(f) => panic!(
            "{what}: expected the connection to be closed, got a {}-byte response",
            f.len()
        ),
    }
}

/// Parses an ApiVersions response in v0 format: (error code, [(key, min, max)]).
fn api_versions_v0(f: &[u8], correlation_id: i32) -> (i16, Vec<(i16, i16, i16)>) {
    let mut c = Dec(f);
    assert_eq!(c.i32(), correlation_id, "correlation id");
    let err = c.i16();
    let n = c.i32();
    let apis = (0..n).map(|_| (c.i16(), c.i16(), c.i16())).collect();
    (err, apis)
}

fn api_versions(stream: &mut TcpStream, correlation_id: i32) -> Vec<(i16, i16, i16)> {
    stream
        .write_all(&frame(18, 0, correlation_id, &[]))
        .unwrap();
    match read_reply(stream) {
        Reply::Closed => panic!("ApiVersions v0 closed the connection"),
        Reply::Frame(f) => {
            let (err, apis) = api_versions_v0(&f, correlation_id);
            assert_eq!(err, 0, "ApiVersions v0 error code");
            apis
        }
    }
}

/// Produces one record with librdkafka and reads it back, proving that the
/// broker still serves normal clients.
fn assert_clients_still_work(broker: &mut Broker, marker: &str) {
    broker.assert_running();
    let mut s = connect(broker);
    assert!(!api_versions(&mut s, 1).is_empty());
    let topic = "health";
    if !broker.topics().contains_key(topic) {
        broker.create_topic(topic, 1, &[]);
    }
    let (_, before) = broker.watermarks(topic, 0);
    let rec = Rec {
        partition: 0,
        offset: -1,
        key: Some(marker.as_bytes().to_vec()),
        value: Some(b"still alive".to_vec()),
        headers: vec![],
        timestamp: Timestamp::CreateTime(sluice_tests::now_ms()),
    };
    let producer = broker.producer(&[("acks", "all")]);
    let reports = produce_all(&producer, topic, &[rec], Duration::from_secs(30));
    assert_all_acked(&reports, 1);
    let got = broker
        .read_partitions(
            topic,
            &[(0, Offset::Offset(before))],
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(got[&0].len(), 1);
    assert_eq!(got[&0][0].key.as_deref(), Some(marker.as_bytes()));
    broker.assert_running();
}

#[test]
fn raw_api_versions_and_unsupported_version_fallback() {
    let broker = Broker::start();
    let mut s = connect(&broker);
    let apis = api_versions(&mut s, 42);
    let find = |key: i16| apis.iter().find(|(k, _, _)| *k == key).copied();
    for (key, name) in [
        (0, "Produce"),
        (1, "Fetch"),
        (2, "ListOffsets"),
        (3, "Metadata"),
        (18, "ApiVersions"),
        (19, "CreateTopics"),
        (20, "DeleteTopics"),
        (21, "DeleteRecords"),
        (22, "InitProducerId"),
        (23, "OffsetForLeaderEpoch"),
        (32, "DescribeConfigs"),
        (33, "AlterConfigs"),
        (37, "CreatePartitions"),
        (44, "IncrementalAlterConfigs"),
    ] {
        let (_, min, max) = find(key).unwrap_or_else(|| panic!("{name} ({key}) not advertised"));
        assert!(min <= max, "{name}: min {min} > max {max}");
    }
    assert!(
        find(0).unwrap().2 >= 3,
        "Produce must support record batches (v3+)"
    );
    assert!(find(1).unwrap().2 >= 4, "Fetch must support v4+");

    // KIP-511: an ApiVersions request newer than supported gets
    // UNSUPPORTED_VERSION (35) with the supported range in v0 format, and the
    // connection stays usable.
    s.write_all(&frame(18, 999, 43, &[])).unwrap();
    match read_reply(&mut s) {
        Reply::Closed => panic!("ApiVersions v999 must be answered, not dropped"),
        Reply::Frame(f) => {
            let (err, apis) = api_versions_v0(&f, 43);
            assert_eq!(err, 35, "error code for an unsupported ApiVersions version");
            assert!(
                apis.iter().any(|(k, min, _)| *k == 18 && *min == 0),
                "the fallback response must advertise ApiVersions: {apis:?}"
            );
        }
    }
    assert!(
        !api_versions(&mut s, 44).is_empty(),
        "connection unusable after fallback"
    );
}

#[test]
fn garbage_requests_are_rejected_without_harm() {
    let mut broker = Broker::start();

    // Unknown API key.
    let mut s = connect(&broker);
    s.write_all(&frame(0x7abc, 0, 7, &[1, 2, 3, 4])).unwrap();
    expect_rejected(&mut s, 7, "unknown API key");
    assert_clients_still_work(&mut broker, "after-unknown-api");

    // Known API, absurd version.
    let mut s = connect(&broker);
    s.write_all(&frame(3, 31_000, 8, &[0, 0, 0, 0])).unwrap();
    expect_rejected(&mut s, 8, "Metadata v31000");

    // Metadata v1 whose topic array claims 2^31-1 entries but has none.
    let mut s = connect(&broker);
    s.write_all(&frame(3, 1, 9, &[0x7f, 0xff, 0xff, 0xff]))
        .unwrap();
    expect_rejected(&mut s, 9, "Metadata with a bogus array length");

    // Header cut short: only the api key and half a version.
    let mut s = connect(&broker);
    s.write_all(&[0, 0, 0, 3, 0, 3, 0]).unwrap();
    expect_closed(&mut s, "3-byte request");
    assert_clients_still_work(&mut broker, "after-garbage");
}

#[test]
fn oversized_and_negative_frame_lengths_close_only_that_connection() {
    let mut broker = Broker::start();
    let mut bystander = connect(&broker);
    assert!(!api_versions(&mut bystander, 1).is_empty());

    let mut s = connect(&broker);
    s.write_all(&[0x7f, 0xff, 0xff, 0xff]).unwrap();
    let _ = s.write_all(&[0u8; 64]);
    expect_closed(&mut s, "frame length 0x7fffffff");
    assert_clients_still_work(&mut broker, "after-oversized");

    let mut s = connect(&broker);
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let _ = s.write_all(&[0u8; 16]);
    expect_closed(&mut s, "negative frame length");

    let mut s = connect(&broker);
    s.write_all(&(200i32 << 20).to_be_bytes()).unwrap();
    let _ = s.write_all(&[0u8; 16]);
    expect_closed(
        &mut s,
        "frame length of 200 MiB (above socket.request.max.bytes)",
    );

    // The connection opened before all this is unaffected.
    assert!(!api_versions(&mut bystander, 2).is_empty());
    assert_clients_still_work(&mut broker, "after-negative");
}

#[test]
fn truncated_frames_do_not_block_or_crash() {
    let mut broker = Broker::start();

    // A frame that never completes while other clients keep working.
    let mut stalled = connect(&broker);
    stalled.write_all(&100i32.to_be_bytes()).unwrap();
    stalled.write_all(&[0, 18, 0, 0, 0, 0, 0, 5, 0]).unwrap();
    assert_clients_still_work(&mut broker, "while-stalled");
    drop(stalled);

    // A frame cut off by the client closing its side.
    let mut s = connect(&broker);
    s.write_all(&50i32.to_be_bytes()).unwrap();
    s.write_all(&[0, 18, 0, 0, 0, 0, 0, 6, 0, 0, 1, 2]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    expect_closed(&mut s, "half-closed truncated frame");

    // Truncated after the length prefix only, then a hard close.
    for _ in 0..20 {
        let mut s = connect(&broker);
        s.write_all(&[0, 0, 1]).unwrap();
        drop(s);
    }
    assert_clients_still_work(&mut broker, "after-truncated");
}

#[test]
fn corrupt_record_batch_is_refused() {
    let broker = Broker::start();
    broker.create_topic("victim", 1, &[]);
    let mut s = connect(&broker);
    let apis = api_versions(&mut s, 1);
    let (_, min, max) = *apis
        .iter()
        .find(|(k, _, _)| *k == 0)
        .expect("Produce advertised");
    assert!(
        min <= 3 && 3 <= max,
        "Produce v3 must be supported (advertised {min}..={max})"
    );
    let ts = sluice_tests::now_ms();

    // A well-formed raw produce works.
    let good = record_batch(b"hand made", ts);
    s.write_all(&frame(0, 3, 2, &produce_v3_body("victim", 0, &good)))
        .unwrap();
    match read_reply(&mut s) {
        Reply::Closed => panic!("valid Produce v3 closed the connection"),
        Reply::Frame(f) => assert_eq!(produce_v3_result(&f, 2), (0, 0), "valid raw produce"),
    }

    // The same batch with a broken CRC must not be stored.
    let mut bad = record_batch(b"bit rot", ts);
    bad[17] ^= 0xff;
    s.write_all(&frame(0, 3, 3, &produce_v3_body("victim", 0, &bad)))
        .unwrap();
    match read_reply(&mut s) {
        Reply::Closed => {}
        Reply::Frame(f) => {
            let (err, _) = produce_v3_result(&f, 3);
            assert_ne!(err, 0, "a batch with a wrong CRC was accepted");
        }
    }
    // A batch whose length field lies about its size.
    let mut short = record_batch(b"short", ts);
    short.truncate(short.len() - 3);
    let mut s = connect(&broker);
    s.write_all(&frame(0, 3, 4, &produce_v3_body("victim", 0, &short)))
        .unwrap();
    match read_reply(&mut s) {
        Reply::Closed => {}
        Reply::Frame(f) => {
            let (err, _) = produce_v3_result(&f, 4);
            assert_ne!(err, 0, "a truncated batch was accepted");
        }
    }

    assert_eq!(
        broker.watermarks("victim", 0),
        (0, 1),
        "only the valid batch is stored"
    );
    let got = broker
        .read_partitions("victim", &[(0, Offset::Beginning)], Duration::from_secs(30))
        .unwrap();
    assert_eq!(got[&0].len(), 1);
    assert_eq!(got[&0][0].value.as_deref(), Some(&b"hand made"[..]));
    assert_eq!(got[&0][0].key, None);
    assert_eq!(got[&0][0].timestamp, Timestamp::CreateTime(ts));
}

#[test]
fn unknown_topic_with_auto_create_disabled() {
    let broker = Broker::start_with(&["--auto-create-topics", "false"]);
    let rec = Rec {
        partition: 0,
        offset: -1,
        key: None,
        value: Some(b"nobody home".to_vec()),
        headers: vec![],
        timestamp: Timestamp::CreateTime(sluice_tests::now_ms()),
    };
    let producer = broker.producer(&[
        ("acks", "all"),
        ("message.timeout.ms", "20000"),
        ("topic.metadata.propagation.max.ms", "1000"),
    ]);
    let reports = produce_all(
        &producer,
        "ghost",
        std::slice::from_ref(&rec),
        Duration::from_secs(40),
    );
    assert_eq!(reports.len(), 1);
    let code = reports[0]
        .error
        .as_ref()
        .map(|e| e.rdkafka_error_code())
        .unwrap_or_else(|| panic!("produce to a missing topic succeeded: {:?}", reports[0]));
    assert_eq!(
        code,
        Some(RDKafkaErrorCode::UnknownTopicOrPartition),
        "expected UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert!(
        !broker.topics().contains_key("ghost"),
        "topic was auto-created"
    );

    // Explicit creation still works.
    broker.create_topic("ghost", 1, &[]);
    let producer = broker.producer(&[("acks", "all")]);
    let reports = produce_all(&producer, "ghost", &[rec], Duration::from_secs(30));
    assert_all_acked(&reports, 1);
    assert_eq!(broker.watermarks("ghost", 0), (0, 1));
}

#[test]
fn batch_above_max_message_bytes_is_refused() {
    let broker = Broker::start();
    broker.create_topic("small", 1, &[("max.message.bytes", "2048")]);

    let admin = broker.admin();
    let opts = rdkafka::admin::AdminOptions::new().request_timeout(Some(OP_TIMEOUT));
    let res = block_on(
        admin.describe_configs([&ResourceSpecifier::Topic("small")], &opts),
        OP_TIMEOUT,
    )
    .unwrap()
    .unwrap();
    let cfg = res[0].as_ref().expect("describe small");
    assert_eq!(
        cfg.get("max.message.bytes")
            .and_then(|e| e.value.as_deref()),
        Some("2048")
    );

    let producer = broker.producer(&[
        ("acks", "all"),
        ("message.max.bytes", "10000000"),
        ("compression.type", "none"),
        ("linger.ms", "0"),
        ("message.timeout.ms", "30000"),
    ]);
    let rec = |len: usize| Rec {
        partition: 0,
        offset: -1,
        key: None,
        value: Some(vec![b'x'; len]),
        headers: vec![],
        timestamp: Timestamp::CreateTime(sluice_tests::now_ms()),
    };
    let reports = produce_all(&producer, "small", &[rec(20_000)], Duration::from_secs(40));
    let err = reports[0].error.as_ref().unwrap_or_else(|| {
        panic!("a 20000-byte record was accepted by a topic limited to 2048 bytes")
    });
    assert_eq!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge),
        "expected MESSAGE_TOO_LARGE, got {err}"
    );

    let reports = produce_all(&producer, "small", &[rec(100)], Duration::from_secs(40));
    assert_all_acked(&reports, 1);
    assert_eq!(
        reports[0].offset, 0,
        "the refused batch must not take an offset"
    );
    assert_eq!(broker.watermarks("small", 0), (0, 1));
}
