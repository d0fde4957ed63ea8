//! The broker as seen through `kcat`.

use std::time::Duration;

use rdkafka::Offset;
use sluice_tests::{Broker, expect_success, kcat};

use crate::common::{assert_all_acked, expected_log, produce_all};

const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn kcat_lists_topics_and_brokers() {
    let broker = Broker::start();
    broker.create_topic("kcat-three", 3, &[]);
    broker.create_topic("kcat-one", 1, &[]);
    let addr = broker.bootstrap();

    let out = kcat(&["-L", "-b", &addr, "-m", "20"], None, KCAT_TIMEOUT).unwrap();
    let text = expect_success("kcat -L", &out);
    assert!(
        text.contains("topic \"kcat-three\" with 3 partitions"),
        "kcat -L output does not list kcat-three with 3 partitions:\n{text}"
    );
    assert!(
        text.contains("topic \"kcat-one\" with 1 partitions"),
        "kcat -L output does not list kcat-one with 1 partition:\n{text}"
    );
    assert!(
        text.contains(&addr),
        "kcat -L output does not show the broker at {addr}:\n{text}"
    );

    let out = kcat(&["-L", "-J", "-b", &addr, "-m", "20"], None, KCAT_TIMEOUT).unwrap();
    let json = expect_success("kcat -L -J", &out);
    let md: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("kcat -L -J printed invalid JSON ({e}):\n{json}"));
    let brokers = md["brokers"].as_array().expect("brokers array");
    assert_eq!(brokers.len(), 1, "exactly one broker expected: {json}");
    assert_eq!(brokers[0]["name"].as_str(), Some(addr.as_str()), "{json}");
    let broker_id = brokers[0]["id"].as_i64().expect("broker id");
    let topics = md["topics"].as_array().expect("topics array");
    let three = topics
        .iter()
        .find(|t| t["topic"] == "kcat-three")
        .unwrap_or_else(|| panic!("kcat-three missing: {json}"));
    let parts = three["partitions"].as_array().expect("partitions");
    let mut ids: Vec<i64> = parts
        .iter()
        .map(|p| p["partition"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2]);
    for p in parts {
        assert_eq!(p["leader"].as_i64(), Some(broker_id), "leader of {p}");
    }
}

#[test]
fn kcat_produce_consume_round_trip() {
    let broker = Broker::start();
    broker.create_topic("kcat-rt", 2, &[]);
    let addr = broker.bootstrap();

    let input: String = (0..50)
        .map(|i| format!("k{i}:value number {i}\n"))
        .collect();
    let out = kcat(
        &[
            "-P",
            "-b",
            &addr,
            "-t",
            "kcat-rt",
            "-p",
            "1",
            "-K",
            ":",
            "-H",
            "origin=kcat",
        ],
        Some(input.as_bytes()),
        KCAT_TIMEOUT,
    )
    .unwrap();
    expect_success("kcat -P", &out);

    let out = kcat(
        &[
            "-C",
            "-b",
            &addr,
            "-t",
            "kcat-rt",
            "-p",
            "1",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%o|%k|%s|%h\n",
        ],
        None,
        KCAT_TIMEOUT,
    )
    .unwrap();
    let text = expect_success("kcat -C", &out);
    let want: String = (0..50)
        .map(|i| format!("{i}|k{i}|value number {i}|origin=kcat\n"))
        .collect();
    assert_eq!(text, want, "kcat read back something else than it wrote");

    // The same records through librdkafka directly.
    let got = broker
        .read_partitions(
            "kcat-rt",
            &[(0, Offset::Beginning), (1, Offset::Beginning)],
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(got[&0].is_empty(), "partition 0 must stay empty");
    assert_eq!(got[&1].len(), 50);
    for (i, r) in got[&1].iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
        assert_eq!(
            r.value.as_deref(),
            Some(format!("value number {i}").as_bytes())
        );
        assert_eq!(
            r.headers,
            vec![("origin".to_string(), Some(b"kcat".to_vec()))]
        );
    }

    // Records written by librdkafka (gzip) read by kcat, including from a
    // relative offset near the end of the partition.
    let records: Vec<sluice_tests::Rec> = (0..20)
        .map(|i| sluice_tests::Rec {
            partition: 0,
            offset: -1,
            key: Some(format!("rk{i}").into_bytes()),
            value: Some(format!("from rdkafka {i}").into_bytes()),
            headers: vec![],
            timestamp: rdkafka::Timestamp::CreateTime(sluice_tests::now_ms()),
        })
        .collect();
    let producer = broker.producer(&[("acks", "all"), ("compression.type", "gzip")]);
    let reports = produce_all(&producer, "kcat-rt", &records, Duration::from_secs(60));
    assert_all_acked(&reports, records.len());
    expected_log(&records, &reports);

    let out = kcat(
        &[
            "-C",
            "-b",
            &addr,
            "-t",
            "kcat-rt",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%k=%s\n",
        ],
        None,
        KCAT_TIMEOUT,
    )
    .unwrap();
    let text = expect_success("kcat -C", &out);
    let want: String = (0..20)
        .map(|i| format!("rk{i}=from rdkafka {i}\n"))
        .collect();
    assert_eq!(text, want);

    let out = kcat(
        &[
            "-C", "-b", &addr, "-t", "kcat-rt", "-p", "0", "-o", "-5", "-e", "-f", "%o %k\n",
        ],
        None,
        KCAT_TIMEOUT,
    )
    .unwrap();
    let text = expect_success("kcat -C -o -5", &out);
    let want: String = (15..20).map(|i| format!("{i} rk{i}\n")).collect();
    assert_eq!(text, want, "reading the last 5 records with -o -5");
}
