//! Option definitions shipped with Sluice. Schemas may import these files
//! without registering them: the compiler resolves them from here, after
//! the schema's own references (so a schema that brings its own copy of,
//! say, protovalidate's file uses that copy) and before the well-known
//! `google/protobuf/*` files.

/// Import path of Sluice's data-policy options.
pub const POLICY_PROTO: &str = "sluice/policy/v1/policy.proto";

/// Import path of the protovalidate-compatible validation rules.
pub const VALIDATE_PROTO: &str = "buf/validate/validate.proto";

/// Every embedded file as `(import path, source text)`.
pub const EMBEDDED_FILES: &[(&str, &str)] = &[
    (
        POLICY_PROTO,
        include_str!("../protos/sluice/policy/v1/policy.proto"),
    ),
    (
        VALIDATE_PROTO,
        include_str!("../protos/buf/validate/validate.proto"),
    ),
];

/// The source text of an embedded file, by import path.
pub fn embedded_source(name: &str) -> Option<&'static str> {
    EMBEDDED_FILES
        .iter()
        .find(|(path, _)| *path == name)
        .map(|(_, source)| *source)
}
