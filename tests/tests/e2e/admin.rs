//! Admin operations through the librdkafka AdminClient.

use std::time::Duration;

use rdkafka::admin::{
    AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, OwnedResourceSpecifier,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use sluice_tests::{Broker, OP_TIMEOUT, Rec, block_on};

use crate::common::{assert_all_acked, produce_all};

fn opts() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(OP_TIMEOUT))
        .operation_timeout(Some(OP_TIMEOUT))
}

fn describe(broker: &Broker, spec: ResourceSpecifier<'_>) -> Vec<rdkafka::admin::ConfigEntry> {
    let admin = broker.admin();
    let res = block_on(admin.describe_configs([&spec], &opts()), OP_TIMEOUT)
        .unwrap()
        .expect("DescribeConfigs request failed");
    assert_eq!(res.len(), 1);
    match res.into_iter().next().unwrap() {
        Ok(r) => r.entries,
        Err(code) => panic!("DescribeConfigs {spec:?} failed: {code:?}"),
    }
}

fn config_value(entries: &[rdkafka::admin::ConfigEntry], key: &str) -> Option<String> {
    entries
        .iter()
        .find(|e| e.name == key)
        .and_then(|e| e.value.clone())
}

fn records(n: usize, partition: i32) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            partition,
            offset: -1,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            headers: vec![],
            timestamp: Timestamp::CreateTime(sluice_tests::now_ms()),
        })
        .collect()
}

#[test]
fn topic_lifecycle_create_partitions_configs_delete() {
    let broker = Broker::start();
    let admin = broker.admin();

    // Create.
    let topic = NewTopic::new("adm", 2, TopicReplication::Fixed(1))
        .set("retention.ms", "86400000")
        .set("cleanup.policy", "delete");
    let res = block_on(admin.create_topics([&topic], &opts()), OP_TIMEOUT)
        .unwrap()
        .unwrap();
    assert_eq!(res, vec![Ok("adm".to_string())]);

    let res = block_on(admin.create_topics([&topic], &opts()), OP_TIMEOUT)
        .unwrap()
        .unwrap();
    assert_eq!(
        res,
        vec![Err((
            "adm".to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))],
        "creating an existing topic"
    );

    let bad = NewTopic::new("bad name!", 1, TopicReplication::Fixed(1));
    let res = block_on(admin.create_topics([&bad], &opts()), OP_TIMEOUT)
        .unwrap()
        .unwrap();
    assert_eq!(
        res,
        vec![Err((
            "bad name!".to_string(),
            RDKafkaErrorCode::InvalidTopic
        ))],
        "creating a topic with an illegal name"
    );

    // Metadata.
    let consumer = broker.consumer(&[]);
    let md = consumer.fetch_metadata(Some("adm"), OP_TIMEOUT).unwrap();
    assert_eq!(md.brokers().len(), 1);
    let broker_id = md.brokers()[0].id();
    let t = &md.topics()[0];
    assert_eq!(t.name(), "adm");
    assert!(
        t.error().is_none(),
        "metadata error for adm: {:?}",
        t.error()
    );
    assert_eq!(t.partitions().len(), 2);
    for p in t.partitions() {
        assert_eq!(p.leader(), broker_id);
        assert_eq!(p.replicas(), &[broker_id]);
        assert_eq!(p.isr(), &[broker_id]);
    }

    // Create partitions.
    let res = block_on(
        admin.create_partitions([&NewPartitions::new("adm", 5)], &opts()),
        OP_TIMEOUT,
    )
    .unwrap()
    .unwrap();
    assert_eq!(res, vec![Ok("adm".to_string())]);
    assert_eq!(
        broker.topics().get("adm"),
        Some(&5),
        "partition count after CreatePartitions"
    );
    let producer = broker.producer(&[("acks", "all")]);
    let reports = produce_all(&producer, "adm", &records(3, 4), Duration::from_secs(60));
    assert_all_acked(&reports, 3);
    assert_eq!(
        broker.watermarks("adm", 4),
        (0, 3),
        "new partition 4 takes writes"
    );

    let res = block_on(
        admin.create_partitions([&NewPartitions::new("adm", 3)], &opts()),
        OP_TIMEOUT,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        res,
        vec![Err((
            "adm".to_string(),
            RDKafkaErrorCode::InvalidPartitions
        ))],
        "decreasing the partition count must be refused"
    );
    assert_eq!(broker.topics().get("adm"), Some(&5));

    // Describe topic configs.
    let entries = describe(&broker, ResourceSpecifier::Topic("adm"));
    let retention = entries
        .iter()
        .find(|e| e.name == "retention.ms")
        .unwrap_or_else(|| panic!("retention.ms not described: {entries:?}"));
    assert_eq!(retention.value.as_deref(), Some("86400000"));
    assert!(!retention.is_default, "retention.ms was set explicitly");
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    assert_eq!(
        config_value(&entries, "cleanup.policy").as_deref(),
        Some("delete")
    );
    assert!(
        config_value(&entries, "max.message.bytes").is_some(),
        "max.message.bytes not described: {entries:?}"
    );

    // Describe the broker.
    let entries = describe(&broker, ResourceSpecifier::Broker(broker_id));
    assert!(
        !entries.is_empty(),
        "broker {broker_id} has no described configs"
    );

    // Alter (non-incremental AlterConfigs).
    let alter = AlterConfig::new(ResourceSpecifier::Topic("adm")).set("retention.ms", "3600000");
    let res = block_on(admin.alter_configs([&alter], &opts()), OP_TIMEOUT)
        .unwrap()
        .unwrap();
    assert_eq!(
        res,
        vec![Ok(OwnedResourceSpecifier::Topic("adm".to_string()))]
    );
    let entries = describe(&broker, ResourceSpecifier::Topic("adm"));
    assert_eq!(
        config_value(&entries, "retention.ms").as_deref(),
        Some("3600000")
    );

    // An unknown key must be refused and must change nothing. The rdkafka
    // crate reports every AlterConfigs resource as Ok whatever the broker
    // answered, so the refusal is checked through its effect (the Python
    // admin test checks the INVALID_CONFIG error itself).
    let alter = AlterConfig::new(ResourceSpecifier::Topic("adm")).set("no.such.config", "1");
    block_on(admin.alter_configs([&alter], &opts()), OP_TIMEOUT)
        .unwrap()
        .unwrap();
    let entries = describe(&broker, ResourceSpecifier::Topic("adm"));
    assert_eq!(
        config_value(&entries, "retention.ms").as_deref(),
        Some("3600000"),
        "a refused AlterConfigs must leave the existing overrides alone"
    );
    assert_eq!(config_value(&entries, "no.such.config"), None);

    // Delete.
    let res = block_on(admin.delete_topics(&["adm"], &opts()), OP_TIMEOUT)
        .unwrap()
        .unwrap();
    assert_eq!(res, vec![Ok("adm".to_string())]);
    let topics = broker.topics();
    assert!(
        !topics.contains_key("adm"),
        "deleted topic still listed: {topics:?}"
    );

    let res = block_on(admin.delete_topics(&["adm"], &opts()), OP_TIMEOUT)
        .unwrap()
        .unwrap();
    assert_eq!(
        res,
        vec![Err((
            "adm".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))],
        "deleting a topic that does not exist"
    );

    // A new topic with the old name starts empty.
    broker.create_topic("adm", 1, &[]);
    assert_eq!(
        broker.watermarks("adm", 0),
        (0, 0),
        "recreated topic must be empty"
    );
    let entries = describe(&broker, ResourceSpecifier::Topic("adm"));
    assert_ne!(
        config_value(&entries, "retention.ms").as_deref(),
        Some("3600000"),
        "recreated topic must not inherit the old topic's configs"
    );
}

#[test]
fn broker_settings_and_auto_create() {
    let broker = Broker::start_with(&["--broker-id", "7", "--default-partitions", "3"]);

    let consumer = broker.consumer(&[]);
    let md = consumer.fetch_metadata(None, OP_TIMEOUT).unwrap();
    assert_eq!(md.brokers().len(), 1);
    assert_eq!(md.brokers()[0].id(), 7, "--broker-id");
    assert_eq!(md.brokers()[0].host(), "127.0.0.1");
    assert_eq!(md.brokers()[0].port(), broker.kafka_addr().port() as i32);

    let entries = describe(&broker, ResourceSpecifier::Broker(7));
    assert_eq!(
        config_value(&entries, "num.partitions").as_deref(),
        Some("3"),
        "broker config num.partitions should reflect --default-partitions: {entries:?}"
    );
    assert_eq!(
        config_value(&entries, "auto.create.topics.enable").as_deref(),
        Some("true"),
        "broker config auto.create.topics.enable: {entries:?}"
    );

    // A consumer asking for an unknown topic does not create it.
    let md = consumer
        .fetch_metadata(Some("not-made"), OP_TIMEOUT)
        .unwrap();
    let t = &md.topics()[0];
    assert_eq!(t.name(), "not-made");
    assert!(
        t.error().is_some(),
        "unknown topic must be reported with an error"
    );
    assert!(!broker.topics().contains_key("not-made"));

    // A producer writing to an unknown topic creates it with the default
    // partition count.
    let producer = broker.producer(&[("acks", "all")]);
    let reports = produce_all(
        &producer,
        "auto-made",
        &records(5, 2),
        Duration::from_secs(60),
    );
    assert_all_acked(&reports, 5);
    assert_eq!(broker.topics().get("auto-made"), Some(&3));
    assert_eq!(broker.watermarks("auto-made", 2), (0, 5));
}

#[test]
fn delete_records_moves_low_watermark() {
    let broker = Broker::start();
    broker.create_topic("trim", 2, &[]);
    let producer = broker.producer(&[("acks", "all"), ("linger.ms", "20")]);
    let mut recs = records(100, 0);
    recs.extend(records(10, 1));
    let reports = produce_all(&producer, "trim", &recs, Duration::from_secs(60));
    assert_all_acked(&reports, 110);
    assert_eq!(broker.watermarks("trim", 0), (0, 100));

    let admin = broker.admin();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("trim", 0, Offset::Offset(40))
        .unwrap();
    tpl.add_partition_offset("trim", 1, Offset::End).unwrap();
    let res = block_on(admin.delete_records(&tpl, &opts()), OP_TIMEOUT)
        .unwrap()
        .expect("DeleteRecords failed");
    let p0 = res
        .find_partition("trim", 0)
        .expect("partition 0 in result");
    p0.error().expect("DeleteRecords error on partition 0");
    assert_eq!(
        p0.offset(),
        Offset::Offset(40),
        "new low watermark of partition 0"
    );
    let p1 = res
        .find_partition("trim", 1)
        .expect("partition 1 in result");
    p1.error().expect("DeleteRecords error on partition 1");
    assert_eq!(
        p1.offset(),
        Offset::Offset(10),
        "new low watermark of partition 1"
    );

    assert_eq!(broker.watermarks("trim", 0), (40, 100));
    assert_eq!(broker.watermarks("trim", 1), (10, 10));

    let got = broker
        .read_partitions(
            "trim",
            &[(0, Offset::Beginning), (1, Offset::Beginning)],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(got[&0].len(), 60);
    assert_eq!(
        got[&0][0].offset, 40,
        "reading from the beginning starts at the low watermark"
    );
    assert_eq!(got[&0][0].key.as_deref(), Some(&b"k40"[..]));
    assert!(got[&1].is_empty());

    // A fetch below the low watermark resets to it (auto.offset.reset=earliest).
    let got = broker
        .read_partitions("trim", &[(0, Offset::Offset(10))], Duration::from_secs(60))
        .unwrap();
    assert_eq!(got[&0].first().map(|r| r.offset), Some(40));

    // Deleting beyond the high watermark is refused.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("trim", 0, Offset::Offset(1000))
        .unwrap();
    let res = block_on(admin.delete_records(&tpl, &opts()), OP_TIMEOUT).unwrap();
    let refused = match &res {
        Err(_) => true,
        Ok(tpl) => tpl
            .find_partition("trim", 0)
            .is_some_and(|e| e.error().is_err()),
    };
    assert!(
        refused,
        "DeleteRecords past the high watermark must fail: {res:?}"
    );
    assert_eq!(broker.watermarks("trim", 0), (40, 100));
}
