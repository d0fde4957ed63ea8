//! One storage scenario, run on each kind of store: SQLite + local files
//! (the embedded default) and PostgreSQL + an S3 API server.
//!
//! It covers what the metadata and object stores keep: topics and their
//! configs, offset assignment and the offset index, segments, idempotent
//! producer ids, consumer groups and committed offsets, schemas, and the
//! Iceberg catalog with the archiver's offset → file index, before and
//! after a restart.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_tests::{Broker, OP_TIMEOUT, orders};

use crate::cluster::SharedStores;
use crate::common::{
    SAFE_PRODUCER, assert_all_acked, assert_same_log, gen_record, produce_all, produce_generated,
    read_all,
};
use crate::lakehouse::sluice_cli;

fn storage_scenario(broker: &mut Broker) {
    broker.create_topic("scenario", 3, &[("retention.ms", "987654321")]);
    let expected = produce_generated(
        broker,
        "scenario",
        3,
        3_000,
        21,
        &[("compression.type", "lz4")],
    );
    assert_same_log(
        &read_all(broker, "scenario", 3, Duration::from_secs(60)),
        &expected,
    );
    let schema_id = orders::register_order_schema(&broker.registry_addr(), "orders-value")
        .expect("register a schema");

    // A group commits offsets part way.
    let group = "scenario-group";
    {
        let consumer = broker.consumer(&[("group.id", group), ("enable.auto.commit", "false")]);
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset("scenario", p, Offset::Offset(10 + p as i64))
                .unwrap();
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .expect("commit offsets");
    }
    wait_for_table_rows(broker, "scenario", 3_000);

    broker.restart();

    // Everything is still there, read from the table and the segments.
    assert_same_log(
        &read_all(broker, "scenario", 3, Duration::from_secs(60)),
        &expected,
    );
    for (p, recs) in &expected {
        assert_eq!(broker.watermarks("scenario", *p), (0, recs.len() as i64));
    }
    let consumer = broker.consumer(&[("group.id", group)]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("scenario", p);
    }
    let committed = consumer
        .committed_offsets(tpl, OP_TIMEOUT)
        .expect("committed offsets");
    let got: Vec<Offset> = (0..3)
        .map(|p| committed.find_partition("scenario", p).unwrap().offset())
        .collect();
    assert_eq!(
        got,
        [Offset::Offset(10), Offset::Offset(11), Offset::Offset(12)]
    );
    assert_eq!(
        orders::register_order_schema(&broker.registry_addr(), "orders-value").unwrap(),
        schema_id,
        "the same schema keeps its id"
    );
    let described = sluice_cli(&["topics", "describe", "scenario", "-b", &broker.bootstrap()]);
    assert!(described.contains("987654321"), "{described}");

    // New offsets continue after the stored ones, and new producer ids
    // are not reused.
    let records: Vec<_> = (0..600)
        .map(|i| gen_record(22, i, 3, sluice_tests::now_ms()))
        .collect();
    let producer = broker.producer(SAFE_PRODUCER);
    let reports = produce_all(&producer, "scenario", &records, Duration::from_secs(120));
    assert_all_acked(&reports, records.len());
    for p in 0..3 {
        let first = reports
            .iter()
            .filter(|d| d.partition == p)
            .map(|d| d.offset)
            .min();
        assert_eq!(
            first,
            Some(expected[&p].len() as i64),
            "partition {p} continues"
        );
    }
    wait_for_table_rows(broker, "scenario", 3_600);
}

/// Waits until the topic's table holds `n` rows, each offset once.
pub(crate) fn wait_for_table_rows(broker: &Broker, topic: &str, n: i64) {
    // The table's SQL name (as the lakehouse names it).
    let table = topic.replace(['.', '-'], "_");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = sluice_cli(&[
            "sql",
            &format!(
                "SELECT count(*) AS n, count(DISTINCT kafka_partition * 1000000 + kafka_offset) AS d FROM {table}"
            ),
            "--http",
            &broker.http_addr(),
        ]);
        let row: Vec<i64> = out
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if row == [n, n] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "table {topic} shows {out} instead of {n} rows"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn storage_scenario_on_sqlite_and_local_files() {
    let mut broker = Broker::start_with(&["--table-commit-interval-ms", "300"]);
    storage_scenario(&mut broker);
}

#[test]
fn storage_scenario_on_postgres_and_s3() {
    let stores = SharedStores::start();
    let mut broker = stores.broker(1);
    storage_scenario(&mut broker);
    // The data is in the bucket, none of it on the broker's disk.
    let keys = stores
        .s3
        .list_keys(crate::cluster::BUCKET, "cluster/")
        .unwrap();
    assert!(keys.iter().any(|k| k.contains("/segments/")), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(".parquet")), "{keys:?}");
    assert!(
        !broker.data_dir().join("objects").exists(),
        "segments were written to the broker's disk"
    );
}
