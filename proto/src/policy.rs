//! Reading Sluice's data-policy annotations (`sluice.policy.v1`) from a
//! compiled schema, for consumers such as redaction that need to know what
//! a field may be used for.

use prost_reflect::{DynamicMessage, FieldDescriptor, MessageDescriptor, ReflectMessage, Value};

const FIELD_EXTENSION: &str = "sluice.policy.v1.field";
const MESSAGE_EXTENSION: &str = "sluice.policy.v1.message";

/// The policy of a field or the default policy of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPolicy {
    pub purposes: Vec<String>,
    pub sensitivity: String,
}

fn read(options: &DynamicMessage, extension: &str) -> Option<FieldPolicy> {
    let pool = options.descriptor().parent_pool().clone();
    let extension = pool.get_extension_by_name(extension)?;
    if !options.has_extension(&extension) {
        return None;
    }
    let value = options.get_extension(&extension);
    let policy = value.as_message()?;
    // Fields 1 and 2 in both FieldPolicy and MessagePolicy.
    let purposes = policy
        .get_field_by_number(1)
        .and_then(|v| {
            v.as_list().map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
        })
        .unwrap_or_default();
    let sensitivity = policy
        .get_field_by_number(2)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Some(FieldPolicy {
        purposes,
        sensitivity,
    })
}

/// The policy declared on `field`, falling back to its message's default.
pub fn field_policy(field: &FieldDescriptor) -> Option<FieldPolicy> {
    read(&field.options(), FIELD_EXTENSION).or_else(|| message_policy(field.parent_message()))
}

/// The default policy declared on `message`.
pub fn message_policy(message: &MessageDescriptor) -> Option<FieldPolicy> {
    read(&message.options(), MESSAGE_EXTENSION)
}
