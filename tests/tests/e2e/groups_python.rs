//! The group and topic admin surface as other tools see it: confluent-kafka's
//! and kafka-python's admin clients, and the `sluice groups` command.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::{Broker, expect_success, run_python, run_with_timeout, sluice_bin};

use crate::groups::{
    CONSUME_TIMEOUT, Member, produce_tagged, start_broker, wait_balanced, wait_until,
};

const PY_TIMEOUT: Duration = Duration::from_secs(120);
const TOPIC: &str = "ga-topic";

/// confluent-kafka: list, describe, committed offsets and lag, delete.
const CONFLUENT_GROUPS: &str = r#"
import json, sys
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
addr, topic = sys.argv[1], sys.argv[2]
a = AdminClient({'bootstrap.servers': addr})

def listed():
    res = a.list_consumer_groups(request_timeout=20).result(timeout=30)
    return ({g.group_id: {'state': g.state.name, 'simple': g.is_simple_consumer_group}
             for g in res.valid}, [str(e) for e in res.errors])

def offsets(gid):
    out = {}
    for _, f in a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)],
                                              request_timeout=20).items():
        for tp in f.result(timeout=30).topic_partitions:
            if tp.topic == topic:
                out[str(tp.partition)] = tp.offset
    return out

groups, list_errors = listed()
described = {}
for gid, f in a.describe_consumer_groups(['ga-busy', 'ga-idle'], request_timeout=20).items():
    d = f.result(timeout=30)
    described[gid] = {
        'state': d.state.name,
        'assignor': d.partition_assignor,
        'simple': d.is_simple_consumer_group,
        'members': [{'client_id': m.client_id, 'host': m.host,
                     'partitions': sorted(tp.partition for tp in m.assignment.topic_partitions
                                          if tp.topic == topic)}
                    for m in d.members],
    }
specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(3)}
ends = {tp.partition: f.result(timeout=30).offset for tp, f in a.list_offsets(specs).items()}
committed = {gid: offsets(gid) for gid in ['ga-busy', 'ga-idle']}
lag = {gid: {p: ends[int(p)] - o for p, o in offs.items()} for gid, offs in committed.items()}
deleted = {}
for gid, f in a.delete_consumer_groups(['ga-busy', 'ga-idle', 'ga-missing'],
                                       request_timeout=20).items():
    try:
        f.result(timeout=30)
        deleted[gid] = 'OK'
    except KafkaException as e:
        deleted[gid] = e.args[0].name()
groups_after, _ = listed()
print(json.dumps({
    'groups': groups, 'list_errors': list_errors, 'described': described,
    'ends': {str(p): o for p, o in ends.items()}, 'committed': committed, 'lag': lag,
    'deleted': deleted, 'groups_after': groups_after,
    'idle_offsets_after': offsets('ga-idle'), 'busy_offsets_after': offsets('ga-busy'),
}))
"#;

/// kafka-python: groups seen by a second implementation, and the topic
/// lifecycle with a config change read back.
const KAFKA_PYTHON_ADMIN: &str = r#"
import json, sys
from kafka.admin import ConfigResource, KafkaAdminClient
addr, topic = sys.argv[1], sys.argv[2]
a = KafkaAdminClient(bootstrap_servers=[addr], request_timeout_ms=20000)
out = {}
g = a.describe_groups(['ga-busy'])['ga-busy']
out['busy'] = {
    'state': g['group_state'], 'protocol_type': g['protocol_type'],
    'assignor': g['protocol_data'],
    'members': [{'client_id': m['client_id'],
                 'topics': m['member_metadata']['topics'],
                 'assigned': {t['topic']: sorted(t['partitions'])
                              for t in m['member_assignment']['assigned_partitions']}}
                for m in g['members']],
}
out['listed'] = sorted((x['group_id'], x['group_state']) for x in a.list_groups())
out['busy_offsets'] = {str(tp.partition): o.offset
                       for tp, o in a.list_group_offsets('ga-busy')['ga-busy'].items()
                       if tp.topic == topic}

created = a.create_topics({'kp-admin': {'num_partitions': 2, 'configs': {'retention.ms': '1234567'}}})
out['created'] = [t['error_code'] for t in created['topics']]
again = a.create_topics({'kp-admin': {'num_partitions': 2}}, raise_errors=False)
out['created_again'] = [t['error_code'] for t in again['topics']]
out['described_partitions'] = [len(t['partitions']) for t in a.describe_topics(['kp-admin'])]
out['altered'] = a.alter_configs([ConfigResource('TOPIC', 'kp-admin', {
    'retention.ms': '7654321', 'retention.bytes': '99999999'})])['topic']['kp-admin']
cfg = a.describe_configs([ConfigResource('TOPIC', 'kp-admin')])['topic']['kp-admin']
out['config'] = {k: v['value'] for k, v in cfg.items()}
out['deleted'] = [t['error_code'] for t in a.delete_topics(['kp-admin'])['topics']]
out['topics_after'] = sorted(a.list_topics())
a.close()
print(json.dumps(out))
"#;

fn run_cli(args: &[&str]) -> String {
    let bin = sluice_bin().expect("sluice binary");
    let out = run_with_timeout(Command::new(&bin).args(args), None, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("sluice {args:?}: {e:#}"));
    expect_success(&format!("sluice {}", args.join(" ")), &out)
}

/// Rows of the table printed by `sluice groups describe`, keyed by
/// (topic, partition): [COMMITTED, END, LAG, MEMBER] (STABLE left out).
fn describe_rows(out: &str) -> BTreeMap<(String, i32), Vec<String>> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("TOPIC"));
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no table in:\n{out}"));
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "END",
            "STABLE",
            "LAG",
            "MEMBER"
        ],
        "table header in:\n{out}"
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert!(cells.len() >= 7, "bad row {l:?} in:\n{out}");
            let partition: i32 = cells[1]
                .parse()
                .unwrap_or_else(|_| panic!("bad partition in {l:?}"));
            let mut rest: Vec<String> = [cells[2], cells[3], cells[5]]
                .iter()
                .map(|c| c.to_string())
                .collect();
            rest.push(cells[6..].join(" "));
            ((cells[0].to_string(), partition), rest)
        })
        .collect()
}

/// The member id of `client_id`'s member in the members table printed by
/// `sluice groups describe` (MEMBER ID, CLIENT ID, HOST, PARTITIONS).
fn member_id(out: &str, client_id: &str) -> String {
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("MEMBER ID"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .filter(|cells: &Vec<&str>| cells.get(1) == Some(&client_id))
        .collect();
    assert_eq!(rows.len(), 1, "one member of {client_id} in:\n{out}");
    assert_eq!(rows[0][2], "/127.0.0.1", "host of {client_id} in:\n{out}");
    rows[0][0].to_string()
}

fn row(committed: &str, end: &str, lag: &str, member: &str) -> Vec<String> {
    [committed, end, lag, member].map(str::to_string).to_vec()
}

fn cli_checks(broker: &Broker) {
    let addr = broker.bootstrap();
    let out = run_cli(&["groups", "describe", "ga-busy", "-b", &addr]);
    assert!(
        out.contains("state: Stable") && out.contains("members: 1"),
        "group summary line:\n{out}"
    );
    let owner = member_id(&out, "ga-busy-y");
    let owner = owner.as_str();
    assert_eq!(
        describe_rows(&out),
        BTreeMap::from([
            ((TOPIC.to_string(), 0), row("10", "10", "0", owner)),
            ((TOPIC.to_string(), 1), row("7", "10", "3", owner)),
            ((TOPIC.to_string(), 2), row("0", "10", "10", owner)),
        ]),
        "`sluice groups describe ga-busy`:\n{out}"
    );

    let out = run_cli(&["groups", "describe", "ga-idle", "-b", &addr]);
    assert!(out.contains("state: Empty"), "group summary line:\n{out}");
    assert_eq!(
        describe_rows(&out),
        BTreeMap::from([
            ((TOPIC.to_string(), 0), row("10", "10", "0", "-")),
            ((TOPIC.to_string(), 1), row("4", "10", "6", "-")),
        ]),
        "`sluice groups describe ga-idle`:\n{out}"
    );

    let out = run_cli(&["groups", "list", "-b", &addr]);
    let states: BTreeMap<&str, &str> = out
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?, it.next()?))
        })
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([("ga-busy", "Stable"), ("ga-idle", "Empty")]),
        "`sluice groups list`:\n{out}"
    );
}

#[test]
fn groups_admin_with_python_clients_and_cli() {
    let broker = start_broker();
    broker.create_topic(TOPIC, 3, &[]);
    produce_tagged(&broker, TOPIC, 3, "ga", 10);

    // ga-idle: consumed everything, committed two partitions, then left.
    let x = Member::start(&broker, "ga-idle", TOPIC, "ga-idle-x", &[]);
    wait_until("ga-idle-x consuming", CONSUME_TIMEOUT, || {
        let n = x.records().len();
        if n >= 30 {
            Ok(())
        } else {
            Err(format!("{n} of 30 consumed"))
        }
    });
    x.commit(&[(0, 10), (1, 4)]);
    x.close();

    // ga-busy: an active member with some lag.
    let y = Member::start(&broker, "ga-busy", TOPIC, "ga-busy-y", &[]);
    wait_balanced(&broker, "ga-busy", 3, &[&y]);
    wait_until("ga-busy-y consuming", CONSUME_TIMEOUT, || {
        let n = y.records().len();
        if n >= 30 {
            Ok(())
        } else {
            Err(format!("{n} of 30 consumed"))
        }
    });
    y.commit(&[(0, 10), (1, 7), (2, 0)]);

    cli_checks(&broker);

    let addr = broker.bootstrap();
    let Some(out) = run_python(KAFKA_PYTHON_ADMIN, &[&addr, TOPIC], PY_TIMEOUT) else {
        return;
    };
    let stdout = expect_success("kafka-python admin", &out);
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad kafka-python output ({e}): {stdout}"));
    assert_eq!(
        v["busy"],
        json!({
            "state": "Stable", "protocol_type": "consumer", "assignor": "range",
            "members": [{"client_id": "ga-busy-y", "topics": [TOPIC],
                         "assigned": {TOPIC: [0, 1, 2]}}],
        }),
        "kafka-python describe_groups: {v}"
    );
    assert_eq!(
        v["listed"],
        json!([["ga-busy", "Stable"], ["ga-idle", "Empty"]]),
        "kafka-python list_groups: {v}"
    );
    assert_eq!(
        v["busy_offsets"],
        json!({"0": 10, "1": 7, "2": 0}),
        "kafka-python list_group_offsets: {v}"
    );
    assert_eq!(v["created"], json!([0]), "create_topics: {v}");
    assert_eq!(v["created_again"], json!([36]), "TOPIC_ALREADY_EXISTS: {v}");
    assert_eq!(
        v["described_partitions"],
        json!([2]),
        "describe_topics: {v}"
    );
    assert_eq!(v["altered"], json!("OK"), "alter_configs: {v}");
    assert_eq!(v["config"]["retention.ms"], json!("7654321"), "{v}");
    assert_eq!(v["config"]["retention.bytes"], json!("99999999"), "{v}");
    assert_eq!(v["deleted"], json!([0]), "delete_topics: {v}");
    assert!(
        !v["topics_after"]
            .as_array()
            .unwrap()
            .contains(&json!("kp-admin")),
        "deleted topic still listed: {v}"
    );

    let out = run_python(CONFLUENT_GROUPS, &[&addr, TOPIC], PY_TIMEOUT).unwrap();
    let stdout = expect_success("confluent-kafka group admin", &out);
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad confluent-kafka output ({e}): {stdout}"));
    assert_eq!(v["list_errors"], json!([]), "{v}");
    assert_eq!(
        v["groups"],
        json!({
            "ga-busy": {"state": "STABLE", "simple": false},
            "ga-idle": {"state": "EMPTY", "simple": false},
        }),
        "list_consumer_groups: {v}"
    );
    assert_eq!(
        v["described"]["ga-busy"],
        json!({
            "state": "STABLE", "assignor": "range", "simple": false,
            "members": [{"client_id": "ga-busy-y", "host": "/127.0.0.1", "partitions": [0, 1, 2]}],
        }),
        "describe_consumer_groups ga-busy: {v}"
    );
    assert_eq!(v["described"]["ga-idle"]["state"], json!("EMPTY"), "{v}");
    assert_eq!(v["described"]["ga-idle"]["members"], json!([]), "{v}");
    assert_eq!(v["ends"], json!({"0": 10, "1": 10, "2": 10}), "{v}");
    assert_eq!(
        v["committed"],
        json!({"ga-busy": {"0": 10, "1": 7, "2": 0}, "ga-idle": {"0": 10, "1": 4}}),
        "list_consumer_group_offsets: {v}"
    );
    assert_eq!(
        v["lag"],
        json!({"ga-busy": {"0": 0, "1": 3, "2": 10}, "ga-idle": {"0": 0, "1": 6}}),
        "{v}"
    );
    assert_eq!(
        v["deleted"],
        json!({"ga-busy": "NON_EMPTY_GROUP", "ga-idle": "OK", "ga-missing": "GROUP_ID_NOT_FOUND"}),
        "delete_consumer_groups: {v}"
    );
    assert_eq!(
        v["groups_after"],
        json!({"ga-busy": {"state": "STABLE", "simple": false}}),
        "groups after deleting ga-idle: {v}"
    );
    assert_eq!(v["idle_offsets_after"], json!({}), "{v}");
    assert_eq!(
        v["busy_offsets_after"],
        json!({"0": 10, "1": 7, "2": 0}),
        "a refused delete keeps the offsets: {v}"
    );

    // The CLI no longer lists the deleted group.
    let out = run_cli(&["groups", "list", "-b", &addr]);
    assert!(
        out.contains("ga-busy") && !out.contains("ga-idle"),
        "`sluice groups list` after deleting ga-idle:\n{out}"
    );
    y.close();
}
