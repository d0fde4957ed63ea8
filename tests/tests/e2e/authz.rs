//! Authorization with the ACL authorizer and purpose grants, driven by
//! confluent-kafka (librdkafka) over SASL/SCRAM: ACLs and SCRAM users
//! managed through its AdminClient, consumers refused what they may not
//! read, and purposes checked against the principal's grants.

use std::time::Duration;

use sluice_tests::{expect_success, run_python};

use crate::sasl::{sasl_broker, set_user};

const PY_TIMEOUT: Duration = Duration::from_secs(180);

const SCRIPT: &str = r#"
import json, sys, time
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AclBinding, AclBindingFilter, AclOperation,
    AclPermissionType, NewTopic, ResourcePatternType, ResourceType, ScramCredentialInfo,
    ScramMechanism, UserScramCredentialUpsertion)

sasl = sys.argv[1]
out = {}

def conf(user, password, **extra):
    c = {'bootstrap.servers': sasl, 'security.protocol': 'SASL_PLAINTEXT',
         'sasl.mechanisms': 'SCRAM-SHA-512', 'sasl.username': user,
         'sasl.password': password}
    c.update(extra)
    return c

def error_name(e):
    return e.args[0].name() if e.args and hasattr(e.args[0], 'name') else str(e)

admin = AdminClient(conf('admin', 'admin-pw'))
admin.create_topics([NewTopic('ledger', 1, 1)])['ledger'].result(30)
p = Producer(conf('admin', 'admin-pw'))
for i in range(3):
    p.produce('ledger', value=b'entry-%d' % i)
assert p.flush(30) == 0

bindings = [
    AclBinding(ResourceType.TOPIC, 'ledger', ResourcePatternType.LITERAL,
               'User:alice', '*', AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.GROUP, 'alice-', ResourcePatternType.PREFIXED,
               'User:alice', '*', AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.TOPIC, 'led', ResourcePatternType.PREFIXED,
               'User:bob', '*', AclOperation.READ, AclPermissionType.ALLOW),
    # Every principal may use any consumer group.
    AclBinding(ResourceType.GROUP, '*', ResourcePatternType.LITERAL,
               'User:*', '*', AclOperation.READ, AclPermissionType.ALLOW),
]
for f in admin.create_acls(bindings).values():
    f.result(30)
every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
out['acls'] = sorted('%s:%s:%s:%s:%s' % (b.restype.name, b.resource_pattern_type.name, b.name,
                     b.principal, b.operation.name) for b in admin.describe_acls(every).result(30))

groups = iter(range(1000))

def consume(user, password, client_id, group=None):
    """Subscribes to ledger and reads it from the start: (values, the first
    error, or None)."""
    extra = {'client.id': client_id, 'enable.auto.commit': False,
             'auto.offset.reset': 'earliest',
             'group.id': group or ('%s-reader-%d' % (user, next(groups)))}
    c = Consumer(conf(user, password, **extra))
    c.subscribe(['ledger'])
    values, error = [], None
    deadline = time.time() + 30
    while time.time() < deadline and len(values) < 3 and error is None:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                error = m.error().name()
            continue
        values.append(m.value().decode())
    c.close()
    return values, error

out['alice'] = consume('alice', 'alice-pw', 'books,purpose=billing', group='alice-group')
out['carol'] = consume('carol', 'carol-pw', 'snoop')
out['carol_topics'] = sorted(AdminClient(conf('carol', 'carol-pw')).list_topics(timeout=30).topics)
out['alice_topics'] = sorted(AdminClient(conf('alice', 'alice-pw')).list_topics(timeout=30).topics)
out['bob_billing'] = consume('bob', 'bob-pw', 'crm,purpose=billing')
out['bob_marketing'] = consume('bob', 'bob-pw', 'crm,purpose=marketing')

carol_admin = AdminClient(conf('carol', 'carol-pw'))
try:
    for f in carol_admin.create_acls([bindings[0]]).values():
        f.result(30)
    out['carol_create_acls'] = 'ok'
except Exception as e:
    out['carol_create_acls'] = error_name(e)

delivery = []
cp = Producer(conf('carol', 'carol-pw'))
cp.produce('ledger', value=b'forged', on_delivery=lambda err, msg: delivery.append(err.name() if err else 'ok'))
cp.flush(30)
out['carol_produce'] = delivery

# Deleting bob's ACL takes his access away.
bob_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, 'User:bob', None,
                              AclOperation.ANY, AclPermissionType.ANY)
deleted = admin.delete_acls([bob_filter])
out['deleted'] = sum(len(f.result(30)) for f in deleted.values())
out['bob_after_delete'] = consume('bob', 'bob-pw', 'crm,purpose=marketing')

# SCRAM users through the Kafka admin API.
info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
for f in admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion('dave', info, b'dave-pw')]).values():
    f.result(30)
described = admin.describe_user_scram_credentials().result(30)
out['users'] = sorted(described)
out['dave_mechanisms'] = [i.mechanism.name for i in described['dave'].scram_credential_infos]
out['dave_topics'] = 'ledger' in AdminClient(conf('dave', 'dave-pw')).list_topics(timeout=30).topics
print(json.dumps(out))
"#;

#[test]
fn acls_and_purpose_grants_decide_who_reads_what() {
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy.path(),
        "purposes = [\"billing\", \"marketing\"]\n[grants]\n\"User:alice\" = [\"billing\"]\n\"User:bob\" = [\"marketing\"]\n",
    )
    .unwrap();
    let (broker, sasl) = sasl_broker(&[
        "--authorizer",
        "acl",
        // The loopback plaintext listener is for local tools.
        "--super-users",
        "User:admin;User:ANONYMOUS",
        "--policy-file",
        policy.path().to_str().unwrap(),
        "--group-initial-rebalance-delay-ms",
        "0",
    ]);
    for (user, password) in [
        ("admin", "admin-pw"),
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("carol", "carol-pw"),
    ] {
        set_user(&broker, user, password);
    }
    let Some(out) = run_python(SCRIPT, &[&sasl], PY_TIMEOUT) else {
        return;
    };
    let text = expect_success("confluent-kafka ACL script", &out);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("bad script output ({e}): {text}\n{}", broker.log_tail(40)));
    let entries = serde_json::json!(["entry-0", "entry-1", "entry-2"]);
    assert_eq!(
        v["acls"],
        serde_json::json!([
            "GROUP:LITERAL:*:User:*:READ",
            "GROUP:PREFIXED:alice-:User:alice:READ",
            "TOPIC:LITERAL:ledger:User:alice:READ",
            "TOPIC:PREFIXED:led:User:bob:READ",
        ])
    );
    // READ on the topic and the group, purpose granted: the records.
    assert_eq!(v["alice"][0], entries, "{v}");
    assert!(v["alice"][1].is_null(), "{v}");
    // No ACL: refused, no data, and the topic is not even listed.
    assert_eq!(v["carol"][0], serde_json::json!([]), "{v}");
    assert_eq!(v["carol"][1], "TOPIC_AUTHORIZATION_FAILED", "{v}");
    assert!(
        !v["carol_topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "ledger"),
        "{v}"
    );
    assert!(
        v["alice_topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "ledger"),
        "{v}"
    );
    assert_eq!(
        v["carol_create_acls"], "CLUSTER_AUTHORIZATION_FAILED",
        "{v}"
    );
    assert_eq!(
        v["carol_produce"],
        serde_json::json!(["TOPIC_AUTHORIZATION_FAILED"]),
        "{v}"
    );
    // bob may read the topic, but not for a purpose he is not granted.
    assert_eq!(v["bob_billing"][0], serde_json::json!([]), "{v}");
    assert_eq!(v["bob_billing"][1], "TOPIC_AUTHORIZATION_FAILED", "{v}");
    assert_eq!(v["bob_marketing"][0], entries, "{v}");
    assert_eq!(v["deleted"], 1, "{v}");
    assert_eq!(
        v["bob_after_delete"][1], "TOPIC_AUTHORIZATION_FAILED",
        "{v}"
    );
    assert!(
        v["users"].as_array().unwrap().iter().any(|u| u == "dave"),
        "{v}"
    );
    assert_eq!(v["dave_mechanisms"], serde_json::json!(["SCRAM_SHA_512"]));
    // dave has no ACL on ledger: he logs in but does not see it.
    assert_eq!(v["dave_topics"], false, "{v}");

    let log = broker.log();
    assert!(
        log.contains("principal User:bob is not granted purpose 'billing'"),
        "{}",
        broker.log_tail(40)
    );
    assert!(log.contains("denied by ACLs"), "{}", broker.log_tail(40));
}
