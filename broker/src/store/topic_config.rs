//! Topic configuration keys: every topic config Apache Kafka 3.x/4.x
//! defines, plus Sluice's own `sluice.*` keys, with their defaults, their
//! checks and whether Sluice acts on them.
//!
//! Overrides are stored per topic in the metadata store as a JSON object;
//! everything else reads the defaults below (Kafka's defaults where the key
//! exists there). A Kafka key that means nothing here (replication, local
//! segment files, compaction tuning) is still checked the way Kafka checks
//! it, stored and reported, so tools that set it keep working; its
//! documentation in DescribeConfigs says that it has no effect.

use std::collections::BTreeMap;

/// Kafka's ConfigType ids for DescribeConfigs v3+.
pub const KIND_BOOLEAN: i8 = 1;
pub const KIND_STRING: i8 = 2;
pub const KIND_INT: i8 = 3;
pub const KIND_LONG: i8 = 5;
pub const KIND_DOUBLE: i8 = 6;
pub const KIND_LIST: i8 = 7;

/// What values a key takes (Kafka's validator for it).
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// Any value of the key's kind.
    Any,
    /// An integer in `min..=max`.
    Range(i64, i64),
    /// An integer in `min..=max`, or exactly `or`.
    RangeOr(i64, i64, i64),
    /// A number in `min..=max`.
    Ratio(f64, f64),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A Kafka release or metadata version, e.g. `2.8`, `3.0-IV1`, `0.10.2.1`.
    Version,
    /// `*` or a comma-separated list of `PARTITION:BROKER`.
    ThrottledReplicas,
    /// Checked by a function of Sluice's own.
    Custom(fn(&str) -> Result<(), String>),
}

/// A known topic config key.
pub struct ConfigKey {
    pub name: &'static str,
    pub default: &'static str,
    /// Kafka's ConfigType id for DescribeConfigs v3+.
    pub kind: i8,
    pub check: Check,
    /// Whether Sluice acts on the value; others are checked, stored and
    /// reported only.
    pub applied: bool,
    pub doc: &'static str,
}

pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// The Protobuf message a topic's values are checked against.
pub const VALUE_MESSAGE_TYPE: &str = "sluice.value.message.type";
/// The Protobuf message a topic's keys are checked against.
pub const KEY_MESSAGE_TYPE: &str = "sluice.key.message.type";
/// `reject` or `dlq`: what a batch with invalid records does.
pub const VALIDATION_MODE: &str = "sluice.validation.mode";
/// The dead-letter topic of a topic in `dlq` mode; empty means `TOPIC.dlq`.
pub const DLQ_TOPIC: &str = "sluice.dlq.topic";
/// How the topic's table is partitioned.
pub const TABLE_PARTITIONING: &str = "sluice.table.partitioning";

const I32_MAX: i64 = i32::MAX as i64;
const I64_MAX: i64 = i64::MAX;
const I64_MAX_STR: &str = "9223372036854775807";

/// Documentation of keys that are stored but do nothing here.
const NO_EFFECT: &str =
    "Kafka topic config, stored and reported for compatibility; it has no effect in Sluice.";

/// A Kafka key that Sluice checks, stores and reports but does not act on.
const fn kept(name: &'static str, default: &'static str, kind: i8, check: Check) -> ConfigKey {
    ConfigKey {
        name,
        default,
        kind,
        check,
        applied: false,
        doc: NO_EFFECT,
    }
}

pub static TOPIC_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: CLEANUP_POLICY,
        default: "delete",
        kind: KIND_LIST,
        check: Check::Custom(check_cleanup_policy),
        applied: true,
        doc: "delete: retention.ms and retention.bytes delete the oldest batches; an empty list keeps everything. compact is not supported yet.",
    },
    kept(
        "compression.gzip.level",
        "-1",
        KIND_INT,
        Check::RangeOr(1, 9, -1),
    ),
    kept("compression.lz4.level", "9", KIND_INT, Check::Range(1, 17)),
    ConfigKey {
        name: "compression.type",
        default: "producer",
        kind: KIND_STRING,
        check: Check::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        applied: false,
        doc: "Stored and reported; batches are always kept as the producer compressed them (as with 'producer').",
    },
    kept(
        "compression.zstd.level",
        "3",
        KIND_INT,
        Check::Range(-131_072, 22),
    ),
    kept(
        "delete.retention.ms",
        "86400000",
        KIND_LONG,
        Check::Range(0, I64_MAX),
    ),
    kept(
        "file.delete.delay.ms",
        "60000",
        KIND_LONG,
        Check::Range(0, I64_MAX),
    ),
    kept(
        "flush.messages",
        I64_MAX_STR,
        KIND_LONG,
        Check::Range(1, I64_MAX),
    ),
    kept("flush.ms", I64_MAX_STR, KIND_LONG, Check::Range(0, I64_MAX)),
    kept(
        "follower.replication.throttled.replicas",
        "",
        KIND_LIST,
        Check::ThrottledReplicas,
    ),
    kept(
        "index.interval.bytes",
        "4096",
        KIND_INT,
        Check::Range(0, I32_MAX),
    ),
    kept(
        "leader.replication.throttled.replicas",
        "",
        KIND_LIST,
        Check::ThrottledReplicas,
    ),
    kept(
        "local.retention.bytes",
        "-2",
        KIND_LONG,
        Check::Range(-2, I64_MAX),
    ),
    kept(
        "local.retention.ms",
        "-2",
        KIND_LONG,
        Check::Range(-2, I64_MAX),
    ),
    kept(
        "max.compaction.lag.ms",
        I64_MAX_STR,
        KIND_LONG,
        Check::Range(1, I64_MAX),
    ),
    ConfigKey {
        name: MAX_MESSAGE_BYTES,
        default: "1048588",
        kind: KIND_INT,
        check: Check::Range(0, I32_MAX),
        applied: true,
        doc: "Largest record batch accepted, in bytes.",
    },
    kept(
        "message.downconversion.enable",
        "true",
        KIND_BOOLEAN,
        Check::Any,
    ),
    kept(
        "message.format.version",
        "3.0-IV1",
        KIND_STRING,
        Check::Version,
    ),
    kept(
        "message.timestamp.after.max.ms",
        I64_MAX_STR,
        KIND_LONG,
        Check::Range(0, I64_MAX),
    ),
    kept(
        "message.timestamp.before.max.ms",
        I64_MAX_STR,
        KIND_LONG,
        Check::Range(0, I64_MAX),
    ),
    kept(
        "message.timestamp.difference.max.ms",
        I64_MAX_STR,
        KIND_LONG,
        Check::Range(0, I64_MAX),
    ),
    ConfigKey {
        name: "message.timestamp.type",
        default: "CreateTime",
        kind: KIND_STRING,
        check: Check::OneOf(&["CreateTime", "LogAppendTime"]),
        applied: false,
        doc: "Stored and reported; records keep the producer's create time.",
    },
    kept(
        "min.cleanable.dirty.ratio",
        "0.5",
        KIND_DOUBLE,
        Check::Ratio(0.0, 1.0),
    ),
    kept(
        "min.compaction.lag.ms",
        "0",
        KIND_LONG,
        Check::Range(0, I64_MAX),
    ),
    ConfigKey {
        name: "min.insync.replicas",
        default: "1",
        kind: KIND_INT,
        check: Check::Range(1, I32_MAX),
        applied: false,
        doc: "Stored and reported; durability comes from the object store, so every acknowledged write is already on all 'replicas'.",
    },
    kept("preallocate", "false", KIND_BOOLEAN, Check::Any),
    kept("remote.log.copy.disable", "false", KIND_BOOLEAN, Check::Any),
    kept(
        "remote.log.delete.on.disable",
        "false",
        KIND_BOOLEAN,
        Check::Any,
    ),
    kept("remote.storage.enable", "false", KIND_BOOLEAN, Check::Any),
    ConfigKey {
        name: RETENTION_BYTES,
        default: "-1",
        kind: KIND_LONG,
        check: Check::Any,
        applied: true,
        doc: "Per-partition size after which the oldest batches are deleted; negative keeps all.",
    },
    ConfigKey {
        name: RETENTION_MS,
        default: "604800000",
        kind: KIND_LONG,
        check: Check::Range(-1, I64_MAX),
        applied: true,
        doc: "Age after which batches are deleted; -1 keeps all.",
    },
    ConfigKey {
        name: "segment.bytes",
        default: "1073741824",
        kind: KIND_INT,
        check: Check::Range(14, I32_MAX),
        applied: false,
        doc: "Stored and reported; Sluice sizes its segments by flush window, not by this.",
    },
    kept(
        "segment.index.bytes",
        "10485760",
        KIND_INT,
        Check::Range(4, I32_MAX),
    ),
    kept(
        "segment.jitter.ms",
        "0",
        KIND_LONG,
        Check::Range(0, I64_MAX),
    ),
    kept(
        "segment.ms",
        "604800000",
        KIND_LONG,
        Check::Range(1, I64_MAX),
    ),
    ConfigKey {
        name: "unclean.leader.election.enable",
        default: "false",
        kind: KIND_BOOLEAN,
        check: Check::Any,
        applied: false,
        doc: "Stored and reported; every partition has exactly one leader, so there is nothing to elect.",
    },
    ConfigKey {
        name: VALUE_MESSAGE_TYPE,
        default: "",
        kind: KIND_STRING,
        check: Check::Any,
        applied: true,
        doc: "Fully-qualified Protobuf message of raw (unframed) values, from subject TOPIC-value; empty: values use the schema registry wire format.",
    },
    ConfigKey {
        name: KEY_MESSAGE_TYPE,
        default: "",
        kind: KIND_STRING,
        check: Check::Any,
        applied: true,
        doc: "Fully-qualified Protobuf message of raw (unframed) keys, from subject TOPIC-key; empty: keys use the schema registry wire format.",
    },
    ConfigKey {
        name: VALIDATION_MODE,
        default: "reject",
        kind: KIND_STRING,
        check: Check::OneOf(&["reject", "dlq"]),
        applied: true,
        doc: "What a batch with records that fail schema validation does: reject (refuse the batch with INVALID_RECORD) or dlq (store the valid records, send the invalid ones to the dead-letter topic).",
    },
    ConfigKey {
        name: DLQ_TOPIC,
        default: "",
        kind: KIND_STRING,
        check: Check::Custom(check_dlq_topic),
        applied: true,
        doc: "Dead-letter topic for records that fail validation in dlq mode (created with one partition when missing); empty: TOPIC.dlq.",
    },
    ConfigKey {
        name: TABLE_PARTITIONING,
        default: "day",
        kind: KIND_STRING,
        check: Check::Custom(check_table_partitioning),
        applied: true,
        doc: "Partitioning of the topic's Iceberg table by kafka_timestamp: day, hour, month, year or none. A change applies to files written afterwards.",
    },
];

pub fn key(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

/// The items of a list value (Kafka trims them and drops empty ones).
pub fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn check_cleanup_policy(value: &str) -> Result<(), String> {
    for item in list_items(value) {
        match item {
            "delete" => {}
            "compact" => {
                return Err(format!(
                    "{CLEANUP_POLICY}={value}: log compaction is not supported yet; use 'delete' (or an empty list to keep everything)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid value '{other}' in {CLEANUP_POLICY}: the policies are compact and delete"
                ));
            }
        }
    }
    Ok(())
}

fn check_dlq_topic(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    crate::common::validate_topic_name(value).map_err(|e| format!("{}: {}", DLQ_TOPIC, e.message))
}

fn check_table_partitioning(value: &str) -> Result<(), String> {
    sluice_lakehouse::table::Partitioning::parse(value).map(|_| ())
}

/// Kafka's versions: two to four dot-separated numbers, optionally with an
/// `-IVn` suffix (`2.8`, `3.0-IV1`, `0.10.2.1`).
fn is_version(value: &str) -> bool {
    let (release, iv) = match value.split_once("-IV") {
        Some((r, iv)) => (r, Some(iv)),
        None => (value, None),
    };
    let numbers: Vec<&str> = release.split('.').collect();
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (2..=4).contains(&numbers.len()) && numbers.iter().all(|n| number(n)) && iv.is_none_or(number)
}

fn is_throttled_replicas(value: &str) -> bool {
    let value = value.trim();
    value == "*"
        || list_items(value).all(|item| {
            item.split_once(':').is_some_and(|(p, b)| {
                p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
            })
        })
}

/// Checks one key/value pair the way Kafka does; the error text goes back
/// to the client with INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(k) = key(name) else {
        return Err(format!("unknown topic config '{name}'"));
    };
    let invalid = |expected: String| Err(format!("invalid value '{value}' for {name}: {expected}"));
    let number = match k.kind {
        KIND_INT => match value.trim().parse::<i32>() {
            Ok(n) => Some(n as i64),
            Err(_) => return invalid("expected a 32-bit integer".into()),
        },
        KIND_LONG => match value.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => return invalid("expected a 64-bit integer".into()),
        },
        KIND_DOUBLE => {
            if value.trim().parse::<f64>().is_err() {
                return invalid("expected a number".into());
            }
            None
        }
        KIND_BOOLEAN => {
            if !value.trim().eq_ignore_ascii_case("true")
                && !value.trim().eq_ignore_ascii_case("false")
            {
                return invalid("expected true or false".into());
            }
            None
        }
        _ => None,
    };
    match k.check {
        Check::Any => Ok(()),
        Check::Range(lo, hi) => match number {
            Some(n) if n < lo || n > hi => {
                if hi == I64_MAX || hi == I32_MAX {
                    invalid(format!("must be at least {lo}"))
                } else {
                    invalid(format!("must be between {lo} and {hi}"))
                }
            }
            _ => Ok(()),
        },
        Check::RangeOr(lo, hi, or) => match number {
            Some(n) if n != or && (n < lo || n > hi) => {
                invalid(format!("must be between {lo} and {hi}, or {or}"))
            }
            _ => Ok(()),
        },
        Check::Ratio(lo, hi) => match value.trim().parse::<f64>() {
            Ok(x) if (lo..=hi).contains(&x) => Ok(()),
            _ => invalid(format!("must be between {lo} and {hi}")),
        },
        Check::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(())
            } else {
                invalid(format!("expected one of {}", allowed.join(", ")))
            }
        }
        Check::Version => {
            if is_version(value.trim()) {
                Ok(())
            } else {
                invalid("expected a Kafka version such as 3.0-IV1 or 2.8".into())
            }
        }
        Check::ThrottledReplicas => {
            if is_throttled_replicas(value) {
                Ok(())
            } else {
                invalid("expected * or a list of PARTITION:BROKER".into())
            }
        }
        Check::Custom(f) => f(value),
    }
}

/// A topic's effective configuration: defaults plus its overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfig {
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    pub fn get(&self, name: &str) -> &str {
        self.overrides
            .get(name)
            .map(String::as_str)
            .or_else(|| key(name).map(|k| k.default))
            .unwrap_or("")
    }

    fn get_i64(&self, name: &str) -> i64 {
        self.get(name)
            .trim()
            .parse()
            .unwrap_or_else(|_| key(name).and_then(|k| k.default.parse().ok()).unwrap_or(-1))
    }

    pub fn max_message_bytes(&self) -> usize {
        self.get_i64(MAX_MESSAGE_BYTES).max(64) as usize
    }

    /// Whether retention deletes old batches (`cleanup.policy` has `delete`).
    fn deletes(&self) -> bool {
        list_items(self.get(CLEANUP_POLICY)).any(|p| p == "delete")
    }

    /// `None` means keep forever.
    pub fn retention_ms(&self) -> Option<i64> {
        Some(self.get_i64(RETENTION_MS)).filter(|v| *v >= 0 && self.deletes())
    }

    /// `None` means no size limit.
    pub fn retention_bytes(&self) -> Option<i64> {
        Some(self.get_i64(RETENTION_BYTES)).filter(|v| *v >= 0 && self.deletes())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.overrides).unwrap_or_else(|_| "{}".into())
    }

    pub fn from_json(text: &str) -> TopicConfig {
        TopicConfig {
            overrides: serde_json::from_str(text).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let mut c = TopicConfig::default();
        assert_eq!(c.retention_ms(), Some(604_800_000));
        assert_eq!(c.retention_bytes(), None);
        assert_eq!(c.max_message_bytes(), 1_048_588);
        c.overrides.insert(RETENTION_MS.into(), "-1".into());
        assert_eq!(c.retention_ms(), None);
        assert_eq!(TopicConfig::from_json(&c.to_json()), c);
        c.overrides.insert(RETENTION_MS.into(), "1000".into());
        c.overrides.insert(CLEANUP_POLICY.into(), "".into());
        assert_eq!(c.retention_ms(), None, "no delete policy, no retention");
    }

    #[test]
    fn every_default_passes_its_own_check() {
        for k in TOPIC_KEYS {
            assert!(validate(k.name, k.default).is_ok(), "{}", k.name);
        }
    }

    #[test]
    fn validation() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("no.such.key", "1").is_err());
        assert!(validate("cleanup.policy", "compact").is_err());
        assert!(validate("cleanup.policy", "delete,compact").is_err());
        assert!(validate("cleanup.policy", "remove").is_err());
        assert!(validate("cleanup.policy", "").is_ok());
        assert!(validate("sluice.validation.mode", "dlq").is_ok());
        assert!(validate("sluice.validation.mode", "drop").is_err());
        assert!(validate("sluice.dlq.topic", "").is_ok());
        assert!(validate("sluice.dlq.topic", "orders.dead").is_ok());
        assert!(validate("sluice.dlq.topic", "no spaces").is_err());
        for (k, v) in [
            ("message.format.version", "0.10.0"),
            ("message.format.version", "3.0-IV1"),
            ("message.format.version", "0.10.2.1"),
            ("message.timestamp.type", "LogAppendTime"),
            ("compression.type", "zstd"),
            ("min.insync.replicas", "2"),
            ("segment.bytes", "1048576"),
            ("compression.gzip.level", "-1"),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1, 1:1"),
            ("min.cleanable.dirty.ratio", "0.1"),
            ("preallocate", "true"),
        ] {
            assert!(validate(k, v).is_ok(), "{k}={v}: {:?}", validate(k, v));
        }
        for (k, v) in [
            ("message.format.version", "latest"),
            ("message.timestamp.type", "Now"),
            ("compression.type", "brotli"),
            ("min.insync.replicas", "0"),
            ("segment.bytes", "big"),
            ("segment.bytes", "10"),
            ("compression.gzip.level", "10"),
            ("leader.replication.throttled.replicas", "0-1"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("preallocate", "yes"),
        ] {
            assert!(validate(k, v).is_err(), "{k}={v} accepted");
        }
    }
}
