//! Topic configs as Kafka clients set them: every key Apache Kafka accepts
//! is accepted (and reported), invalid values are refused with
//! INVALID_CONFIG, through confluent-kafka's AdminClient.

use std::time::Duration;

use sluice_tests::{Broker, expect_success, run_python};

const PY_TIMEOUT: Duration = Duration::from_secs(120);

const ADMIN: &str = r#"
import json, sys
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewTopic, ResourceType)
a = AdminClient({'bootstrap.servers': sys.argv[1]})

def error(f):
    try:
        f.result(timeout=30)
        return None
    except Exception as e:
        err = e.args[0] if e.args else None
        if hasattr(err, 'name'):
            return [err.name(), err.str()]
        return ['?', str(e)]

def create(name, config, validate_only=False):
    fs = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1,
                                   config=config)],
                         request_timeout=20, validate_only=validate_only)
    return error(fs[name])

def describe(name):
    out = {}
    for _, f in a.describe_configs([ConfigResource(ResourceType.TOPIC, name)],
                                   request_timeout=20).items():
        for k, e in f.result(timeout=30).items():
            out[k] = [e.value, str(int(getattr(e.source, 'value', e.source)))]
    return out

def incremental(name, entries):
    res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v, op in entries])
    return [error(f) for f in a.incremental_alter_configs([res], request_timeout=20).values()][0]

def legacy(name, config):
    res = ConfigResource(ResourceType.TOPIC, name, set_config=config)
    return [error(f) for f in a.alter_configs([res], request_timeout=20).values()][0]

SET, APPEND, SUBTRACT = AlterConfigOpType.SET, AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT
out = {}
# What librdkafka's admin and mixed-message-version tests set.
kafka_configs = {
    'message.format.version': '0.10.0',
    'message.timestamp.type': 'LogAppendTime',
    'compression.type': 'lz4',
    'min.insync.replicas': '1',
    'segment.bytes': '1048576',
    'segment.ms': '3600000',
    'flush.messages': '1',
    'unclean.leader.election.enable': 'true',
    'leader.replication.throttled.replicas': '*',
    'retention.ms': '86400000',
}
out['validate_only'] = create('cfg-kafka', kafka_configs, validate_only=True)
out['create'] = create('cfg-kafka', kafka_configs)
out['described'] = describe('cfg-kafka')
out['bad_creates'] = {k + '=' + v: create('cfg-bad', {k: v}) for k, v in [
    ('segment.bytes', 'big'), ('compression.type', 'brotli'),
    ('message.timestamp.type', 'Now'), ('min.insync.replicas', '0'),
    ('cleanup.policy', 'remove'), ('cleanup.policy', 'compact'),
    ('no.such.config', '1'), ('message.format.version', 'newest')]}
out['bad_topic_exists'] = 'cfg-bad' in a.list_topics(timeout=20).topics

out['incremental'] = incremental('cfg-kafka', [
    ('max.compaction.lag.ms', '60000', SET), ('preallocate', 'true', SET),
    ('compression.zstd.level', '9', SET),
    ('follower.replication.throttled.replicas', '0:1,1:1', APPEND)])
out['incremental_subtract'] = incremental('cfg-kafka', [
    ('follower.replication.throttled.replicas', '0:1', SUBTRACT)])
out['incremental_bad'] = incremental('cfg-kafka', [
    ('segment.index.bytes', 'lots', SET), ('preallocate', 'false', SET)])
out['incremental_compact'] = incremental('cfg-kafka', [('cleanup.policy', 'compact', APPEND)])
out['after_incremental'] = describe('cfg-kafka')

out['legacy'] = legacy('cfg-kafka', {'message.timestamp.type': 'CreateTime',
                                     'min.cleanable.dirty.ratio': '0.25'})
out['legacy_bad'] = legacy('cfg-kafka', {'min.cleanable.dirty.ratio': '2'})
out['after_legacy'] = describe('cfg-kafka')
a = None
print(json.dumps(out))
"#;

#[test]
fn kafka_topic_configs_are_accepted_and_invalid_values_refused() {
    let broker = Broker::start();
    let Some(out) = run_python(ADMIN, &[&broker.bootstrap()], PY_TIMEOUT) else {
        return;
    };
    let stdout = expect_success("confluent-kafka topic configs", &out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad admin output ({e}): {stdout}"));

    assert!(
        v["validate_only"].is_null(),
        "validate-only create: {}",
        v["validate_only"]
    );
    assert!(v["create"].is_null(), "create with Kafka configs: {v}");
    let described = &v["described"];
    for (k, want) in [
        ("message.format.version", "0.10.0"),
        ("message.timestamp.type", "LogAppendTime"),
        ("compression.type", "lz4"),
        ("min.insync.replicas", "1"),
        ("segment.bytes", "1048576"),
        ("flush.messages", "1"),
        ("unclean.leader.election.enable", "true"),
        ("leader.replication.throttled.replicas", "*"),
        ("retention.ms", "86400000"),
    ] {
        assert_eq!(
            described[k][0].as_str(),
            Some(want),
            "{k} as described: {described}"
        );
        assert_eq!(
            described[k][1].as_str(),
            Some("1"),
            "{k} source (1 = topic override): {described}"
        );
    }
    // Keys nobody set are described with their Kafka defaults.
    for (k, want) in [
        ("compression.gzip.level", "-1"),
        ("local.retention.ms", "-2"),
        ("segment.jitter.ms", "0"),
        ("remote.storage.enable", "false"),
        ("cleanup.policy", "delete"),
    ] {
        assert_eq!(described[k][0].as_str(), Some(want), "{k}: {described}");
        assert_eq!(described[k][1].as_str(), Some("5"), "{k}");
    }

    let bad = v["bad_creates"].as_object().unwrap();
    assert_eq!(bad.len(), 8, "{bad:?}");
    for (k, e) in bad {
        assert_eq!(
            e[0].as_str(),
            Some("INVALID_CONFIG"),
            "creating with a bad {k}: {e}"
        );
    }
    let segment = bad["segment.bytes=big"][1].as_str().unwrap();
    assert!(
        segment.contains("segment.bytes") && segment.contains("big"),
        "{segment}"
    );
    let compact = bad["cleanup.policy=compact"][1].as_str().unwrap();
    assert!(compact.contains("compaction is not supported"), "{compact}");
    assert_eq!(v["bad_topic_exists"], false, "a refused topic was created");

    assert!(v["incremental"].is_null(), "incremental SET/APPEND: {v}");
    assert!(v["incremental_subtract"].is_null(), "SUBTRACT: {v}");
    assert_eq!(
        v["incremental_bad"][0].as_str(),
        Some("INVALID_CONFIG"),
        "{v}"
    );
    assert_eq!(
        v["incremental_compact"][0].as_str(),
        Some("INVALID_CONFIG"),
        "{v}"
    );
    let after = &v["after_incremental"];
    for (k, want) in [
        ("max.compaction.lag.ms", "60000"),
        ("preallocate", "true"),
        ("compression.zstd.level", "9"),
        ("follower.replication.throttled.replicas", "1:1"),
        ("cleanup.policy", "delete"),
        ("segment.index.bytes", "10485760"),
        ("message.format.version", "0.10.0"),
    ] {
        assert_eq!(after[k][0].as_str(), Some(want), "{k}: {after}");
    }

    assert!(v["legacy"].is_null(), "AlterConfigs: {v}");
    assert_eq!(v["legacy_bad"][0].as_str(), Some("INVALID_CONFIG"), "{v}");
    let after = &v["after_legacy"];
    assert_eq!(
        after["message.timestamp.type"][0].as_str(),
        Some("CreateTime")
    );
    assert_eq!(after["min.cleanable.dirty.ratio"][0].as_str(), Some("0.25"));
    // AlterConfigs replaces the whole set of overrides.
    assert_eq!(after["segment.bytes"][1].as_str(), Some("5"), "{after}");
}
