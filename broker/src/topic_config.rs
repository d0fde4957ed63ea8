//! Topic configuration keys that Sluice understands, their defaults and checks.
//!
//! Overrides are stored per topic in the metadata store as a JSON object;
//! everything else reads the defaults below (the same defaults as Apache Kafka
//! where the key exists there).

use std::collections::BTreeMap;

/// A known topic config key.
pub struct ConfigKey {
    pub name: &'static str,
    pub default: &'static str,
    /// Kafka's ConfigType id for DescribeConfigs v3+ (1 boolean, 2 string, 3 int, 5 long, 7 list).
    pub kind: i8,
    pub doc: &'static str,
    /// Whether the broker enforces the value (others are accepted and reported).
    pub enforced: bool,
}

const KIND_STRING: i8 = 2;
const KIND_INT: i8 = 3;
const KIND_LONG: i8 = 5;
const KIND_LIST: i8 = 7;
const KIND_DOUBLE: i8 = 6;
const KIND_BOOLEAN: i8 = 1;

pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";

pub static TOPIC_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        default: "delete",
        kind: KIND_LIST,
        doc: "Retention policy; Sluice supports delete.",
        enforced: true,
    },
    ConfigKey {
        name: "compression.type",
        default: "producer",
        kind: KIND_STRING,
        doc: "Batches are kept as the producer compressed them.",
        enforced: false,
    },
    ConfigKey {
        name: MAX_MESSAGE_BYTES,
        default: "1048588",
        kind: KIND_INT,
        doc: "Largest record batch accepted, in bytes.",
        enforced: true,
    },
    ConfigKey {
        name: "message.timestamp.type",
        default: "CreateTime",
        kind: KIND_STRING,
        doc: "Timestamps are the producer's create time.",
        enforced: false,
    },
    ConfigKey {
        name: "min.insync.replicas",
        default: "1",
        kind: KIND_INT,
        doc: "Durability comes from the object store; accepted for compatibility.",
        enforced: false,
    },
    ConfigKey {
        name: RETENTION_BYTES,
        default: "-1",
        kind: KIND_LONG,
        doc: "Per-partition size after which the oldest batches are deleted; -1 keeps all.",
        enforced: true,
    },
    ConfigKey {
        name: RETENTION_MS,
        default: "604800000",
        kind: KIND_LONG,
        doc: "Age after which batches are deleted; -1 keeps all.",
        enforced: true,
    },
    ConfigKey {
        name: "segment.bytes",
        default: "1073741824",
        kind: KIND_INT,
        doc: "Accepted for compatibility; Sluice sizes segments by flush.",
        enforced: false,
    },
    ConfigKey {
        name: "segment.ms",
        default: "604800000",
        kind: KIND_LONG,
        doc: "Accepted for compatibility.",
        enforced: false,
    },
    ConfigKey {
        name: crate::validation::VALUE_MESSAGE_TYPE,
        default: "",
        kind: KIND_STRING,
        doc: "Fully-qualified Protobuf message of raw (unframed) values, from subject TOPIC-value; empty: values use the schema registry wire format.",
        enforced: true,
    },
    ConfigKey {
        name: crate::validation::KEY_MESSAGE_TYPE,
        default: "",
        kind: KIND_STRING,
        doc: "Fully-qualified Protobuf message of raw (unframed) keys, from subject TOPIC-key; empty: keys use the schema registry wire format.",
        enforced: true,
    },
    ConfigKey {
        name: crate::validation::VALIDATION_MODE,
        default: "reject",
        kind: KIND_STRING,
        doc: "What a batch with records that fail schema validation does: reject (refuse the batch with INVALID_RECORD) or dlq (store the valid records, send the invalid ones to the dead-letter topic).",
        enforced: true,
    },
    ConfigKey {
        name: crate::validation::DLQ_TOPIC,
        default: "",
        kind: KIND_STRING,
        doc: "Dead-letter topic for records that fail validation in dlq mode (created with one partition when missing); empty: TOPIC.dlq.",
        enforced: true,
    },
    ConfigKey {
        name: crate::archiver::TABLE_PARTITIONING,
        default: "day",
        kind: KIND_STRING,
        doc: "Partitioning of the topic's Iceberg table by kafka_timestamp: day, hour, month, year or none. A change applies to files written afterwards.",
        enforced: true,
    },
    ConfigKey {
        name: "unclean.leader.election.enable",
        default: "false",
        kind: KIND_BOOLEAN,
        doc: "Accepted for compatibility.",
        enforced: false,
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        default: "0.5",
        kind: KIND_DOUBLE,
        doc: "Accepted for compatibility.",
        enforced: false,
    },
];

pub fn key(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

/// Checks one key/value pair; the error text goes back to the client.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(k) = key(name) else {
        return Err(format!("unknown topic config '{name}'"));
    };
    let ok = match k.kind {
        KIND_INT => value.parse::<i32>().is_ok(),
        KIND_LONG => value.parse::<i64>().is_ok(),
        KIND_DOUBLE => value.parse::<f64>().is_ok(),
        KIND_BOOLEAN => value == "true" || value == "false",
        _ => true,
    };
    if !ok {
        return Err(format!("invalid value '{value}' for {name}"));
    }
    match name {
        "cleanup.policy" if value != "delete" => Err(format!(
            "cleanup.policy '{value}' is not supported; only 'delete' is"
        )),
        MAX_MESSAGE_BYTES if value.parse::<i32>().unwrap_or(0) < 64 => {
            Err(format!("{name} must be at least 64"))
        }
        RETENTION_MS | RETENTION_BYTES if value.parse::<i64>().unwrap_or(0) < -1 => {
            Err(format!("{name} must be -1 or positive"))
        }
        crate::validation::VALIDATION_MODE if value != "reject" && value != "dlq" => Err(format!(
            "{name} '{value}' is not supported; use 'reject' or 'dlq'"
        )),
        crate::archiver::TABLE_PARTITIONING => {
            sluice_lakehouse::table::Partitioning::parse(value).map(|_| ())
        }
        crate::validation::DLQ_TOPIC if !value.is_empty() => {
            crate::state::validate_topic_name(value).map_err(|e| format!("{name}: {}", e.message))
        }
        _ => Ok(()),
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
            .parse()
            .unwrap_or_else(|_| key(name).and_then(|k| k.default.parse().ok()).unwrap_or(-1))
    }

    pub fn max_message_bytes(&self) -> usize {
        self.get_i64(MAX_MESSAGE_BYTES).max(64) as usize
    }

    /// `None` means keep forever.
    pub fn retention_ms(&self) -> Option<i64> {
        Some(self.get_i64(RETENTION_MS)).filter(|v| *v >= 0)
    }

    /// `None` means no size limit.
    pub fn retention_bytes(&self) -> Option<i64> {
        Some(self.get_i64(RETENTION_BYTES)).filter(|v| *v >= 0)
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
    }

    #[test]
    fn validation() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("no.such.key", "1").is_err());
        assert!(validate("cleanup.policy", "compact").is_err());
        assert!(validate("sluice.validation.mode", "dlq").is_ok());
        assert!(validate("sluice.validation.mode", "drop").is_err());
        assert!(validate("sluice.dlq.topic", "").is_ok());
        assert!(validate("sluice.dlq.topic", "orders.dead").is_ok());
        assert!(validate("sluice.dlq.topic", "no spaces").is_err());
    }
}
