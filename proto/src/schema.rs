//! Compiling a registered schema (plus the files it imports) into a
//! descriptor pool.
//!
//! Schemas reach the registry in two forms: `.proto` source text, or a
//! base64-encoded serialized `FileDescriptorProto` (what confluent-kafka's
//! Python serializer registers). Both go through `protox::Compiler` with a
//! resolver over the supplied files. Using the compiler's own descriptor
//! pool, rather than the `prost-types` descriptors `protox::compile` hands
//! back, matters: those drop extension options, and the validation rules
//! live in extension options.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, FileDescriptor, MessageDescriptor, Value};
use protox::Compiler;
use protox::file::{File, FileResolver, GoogleFileResolver};

use crate::ProtoError;
use crate::embedded::embedded_source;
use crate::validate::{RuleSet, Violation};

/// Name given to the main file when the caller has no preference. The
/// name never reaches the canonical form, so it does not affect identity.
const DEFAULT_MAIN_NAME: &str = "schema.proto";

/// The two encodings a schema string can arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaForm {
    /// `.proto` source text.
    Text,
    /// Base64 of a serialized `FileDescriptorProto`.
    Descriptor,
}

/// Guesses which form `schema` is in. Source text always contains
/// characters outside the base64 alphabet (spaces, `;`, `{`), so anything
/// made only of base64 characters that also decodes as a descriptor is
/// taken to be one.
pub fn detect_form(schema: &str) -> SchemaForm {
    match decode_descriptor(schema) {
        Some(_) => SchemaForm::Descriptor,
        None => SchemaForm::Text,
    }
}

fn decode_descriptor(schema: &str) -> Option<Vec<u8>> {
    let trimmed = schema.trim();
    if trimmed.is_empty()
        || !trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return None;
    }
    let bytes = STANDARD.decode(trimmed).ok()?;
    prost_reflect::prost_types::FileDescriptorProto::decode(bytes.as_slice()).ok()?;
    Some(bytes)
}

/// One input file, already sorted into its form.
enum Source {
    Text(String),
    Descriptor(bytes::Bytes),
}

impl Source {
    fn prepare(name: &str, schema: &str) -> Result<Self, ProtoError> {
        match decode_descriptor(schema) {
            // The descriptor names itself; rename it to the import path it is
            // registered under so imports of it resolve to the same file.
            Some(bytes) => Ok(Source::Descriptor(rename_descriptor(&bytes, name)?.into())),
            None => Ok(Source::Text(schema.to_owned())),
        }
    }

    fn open(&self, name: &str) -> Result<File, protox::Error> {
        match self {
            Source::Text(text) => File::from_source(name, text),
            Source::Descriptor(bytes) => {
                File::decode_file_descriptor_proto(bytes.clone()).map_err(protox::Error::new)
            }
        }
    }
}

/// Sets the `name` of a serialized `FileDescriptorProto` without losing
/// extension options, which a round trip through `prost-types` would drop.
fn rename_descriptor(bytes: &[u8], name: &str) -> Result<Vec<u8>, ProtoError> {
    let desc = file_descriptor_proto_type();
    let mut file = DynamicMessage::decode(desc, bytes)
        .map_err(|e| ProtoError::InvalidDescriptor(e.to_string()))?;
    file.set_field_by_name("name", Value::String(name.to_owned()));
    Ok(file.encode_to_vec())
}

pub(crate) fn file_descriptor_proto_type() -> MessageDescriptor {
    DescriptorPool::global()
        .get_message_by_name("google.protobuf.FileDescriptorProto")
        .unwrap_or_else(|| {
            // The global pool is built from prost-types' compiled-in
            // descriptor.proto; its absence is a broken build, not bad input.
            unreachable!("descriptor.proto is always in the global pool")
        })
}

struct Resolver {
    files: HashMap<String, Source>,
    google: GoogleFileResolver,
}

impl FileResolver for Resolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if let Some(source) = self.files.get(name) {
            return source.open(name);
        }
        if let Some(text) = embedded_source(name) {
            return File::from_source(name, text);
        }
        self.google.open_file(name)
    }
}

/// Compiles `schema` with `references` (import path → schema, in either
/// form) available for import. References may import each other; the
/// caller passes the whole transitive set. Embedded Sluice files and the
/// well-known `google/protobuf/*` files need not be passed.
pub fn compile(
    schema: &str,
    references: &BTreeMap<String, String>,
) -> Result<CompiledSchema, ProtoError> {
    CompiledSchema::compile(schema, references)
}

/// A compiled schema: the descriptor pool holding it and everything it
/// imports, the main file, and the validation rules read from its options.
/// Cheap to share behind an `Arc`; immutable once built.
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    file: FileDescriptor,
    rules: Arc<RuleSet>,
}

impl CompiledSchema {
    /// See [`compile`].
    pub fn compile(
        schema: &str,
        references: &BTreeMap<String, String>,
    ) -> Result<Self, ProtoError> {
        let main_name = if references.contains_key(DEFAULT_MAIN_NAME) {
            // Pick a name no reference uses; the main file is never imported.
            let mut n = 1;
            while references.contains_key(&format!("schema{n}.proto")) {
                n += 1;
            }
            format!("schema{n}.proto")
        } else {
            DEFAULT_MAIN_NAME.to_owned()
        };
        Self::compile_named(&main_name, schema, references)
    }

    /// Like [`CompiledSchema::compile`] with an explicit import path for the
    /// main file.
    pub fn compile_named(
        main_name: &str,
        schema: &str,
        references: &BTreeMap<String, String>,
    ) -> Result<Self, ProtoError> {
        let mut files = HashMap::with_capacity(references.len() + 1);
        for (name, source) in references {
            files.insert(name.clone(), Source::prepare(name, source)?);
        }
        files.insert(main_name.to_owned(), Source::prepare(main_name, schema)?);
        let resolver = Resolver {
            files,
            google: GoogleFileResolver::new(),
        };
        let mut compiler = Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler.open_file(main_name).map_err(compile_error)?;
        let pool = compiler.descriptor_pool();
        let file = pool.get_file_by_name(main_name).ok_or_else(|| {
            ProtoError::InvalidSchema(format!("compiled pool lacks the main file {main_name}"))
        })?;
        let rules = RuleSet::build(&pool)?;
        Ok(CompiledSchema {
            file,
            rules: Arc::new(rules),
        })
    }

    /// The pool with the main file and all its imports.
    pub fn pool(&self) -> &DescriptorPool {
        self.file.parent_pool()
    }

    /// The main file.
    pub fn file(&self) -> &FileDescriptor {
        &self.file
    }

    /// The subject's record type: the first message declared in the file.
    pub fn record_type(&self) -> Option<MessageDescriptor> {
        self.file.messages().next()
    }

    /// Resolves a Confluent message-index path (`[0]` = first top-level
    /// message, `[1, 0]` = first message nested in the second) to a message.
    /// An empty path means `[0]`.
    pub fn message_by_indexes(&self, indexes: &[i32]) -> Result<MessageDescriptor, ProtoError> {
        let not_found = || ProtoError::MessageIndexNotFound(indexes.to_vec());
        let (first, rest) = match indexes.split_first() {
            Some((first, rest)) => (*first, rest),
            None => (0, &[][..]),
        };
        let position = |i: i32| usize::try_from(i).map_err(|_| not_found());
        let mut message = self
            .file
            .messages()
            .nth(position(first)?)
            .ok_or_else(not_found)?;
        for index in rest {
            // Map entry types count: Confluent's clients index the
            // descriptor's nested types, which include them.
            let child = message
                .child_messages()
                .nth(position(*index)?)
                .ok_or_else(not_found)?;
            message = child;
        }
        Ok(message)
    }

    /// The message-index path of a message declared in the main file, by
    /// full name: the inverse of [`CompiledSchema::message_by_indexes`].
    pub fn message_indexes(&self, full_name: &str) -> Option<Vec<i32>> {
        fn search(
            messages: impl Iterator<Item = MessageDescriptor>,
            full_name: &str,
            path: &mut Vec<i32>,
        ) -> bool {
            for (i, message) in messages.enumerate() {
                path.push(i as i32);
                let inside = full_name
                    .strip_prefix(message.full_name())
                    .is_some_and(|rest| rest.starts_with('.'));
                if message.full_name() == full_name
                    || (inside && search(message.child_messages(), full_name, path))
                {
                    return true;
                }
                path.pop();
            }
            false
        }
        let mut path = Vec::new();
        search(self.file.messages(), full_name, &mut path).then_some(path)
    }

    /// Decodes `payload` as `message` and checks it against the validation
    /// rules declared in the schema. Rules were read once at compile time.
    pub fn validate(
        &self,
        message: &MessageDescriptor,
        payload: &[u8],
    ) -> Result<(), Vec<Violation>> {
        self.rules.validate(message, payload)
    }

    /// The main file as a serialized `FileDescriptorProto` (extension
    /// options kept, source locations dropped): the registry's
    /// `format=serialized` form.
    pub fn serialized(&self) -> Vec<u8> {
        match DynamicMessage::decode(
            file_descriptor_proto_type(),
            self.file.encode_to_vec().as_slice(),
        ) {
            Ok(mut file) => {
                file.clear_field_by_name("source_code_info");
                file.encode_to_vec()
            }
            // The pool produced these bytes itself, so they always decode;
            // fall back to them unchanged rather than fail.
            Err(_) => self.file.encode_to_vec(),
        }
    }

    /// [`CompiledSchema::serialized`] as standard base64.
    pub fn serialized_base64(&self) -> String {
        STANDARD.encode(self.serialized())
    }

    /// The canonical text of the main file; see [`crate::canonical_text`].
    pub fn canonical_text(&self) -> String {
        crate::normalize::canonical_text(&self.file)
    }
}

fn compile_error(err: protox::Error) -> ProtoError {
    let message = err.to_string();
    match err.file() {
        Some(file) if !message.contains(file) => {
            ProtoError::InvalidSchema(format!("{file}: {message}"))
        }
        _ => ProtoError::InvalidSchema(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"
        syntax = "proto3";
        package shop.v1;
        import "google/protobuf/timestamp.proto";
        message Order {
          string id = 1;
          google.protobuf.Timestamp placed_at = 2;
          map<string, int32> counts = 3;
          message Line { string sku = 1; }
          message Note { string text = 1; }
        }
        message Refund { string order_id = 1; }
    "#;

    fn no_refs() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn compiles_text_with_well_known_imports() {
        let schema = compile(ORDER, &no_refs()).unwrap();
        assert_eq!(schema.record_type().unwrap().full_name(), "shop.v1.Order");
        assert!(
            schema
                .pool()
                .get_file_by_name("google/protobuf/timestamp.proto")
                .is_some()
        );
    }

    #[test]
    fn message_indexes_resolve_both_ways() {
        let schema = compile(ORDER, &no_refs()).unwrap();
        let name = |ix: &[i32]| {
            schema
                .message_by_indexes(ix)
                .unwrap()
                .full_name()
                .to_owned()
        };
        assert_eq!(name(&[0]), "shop.v1.Order");
        assert_eq!(name(&[]), "shop.v1.Order");
        assert_eq!(name(&[1]), "shop.v1.Refund");
        // Nested types in declaration order, the map entry first.
        assert_eq!(name(&[0, 0]), "shop.v1.Order.CountsEntry");
        assert_eq!(name(&[0, 2]), "shop.v1.Order.Note");
        assert!(matches!(
            schema.message_by_indexes(&[2]),
            Err(ProtoError::MessageIndexNotFound(_))
        ));
        assert!(schema.message_by_indexes(&[-1]).is_err());
        assert!(schema.message_by_indexes(&[0, 9]).is_err());
        assert_eq!(
            schema.message_indexes("shop.v1.Order.Note"),
            Some(vec![0, 2])
        );
        assert_eq!(schema.message_indexes("shop.v1.Refund"), Some(vec![1]));
        assert_eq!(schema.message_indexes("shop.v1.Missing"), None);
    }

    #[test]
    fn descriptor_form_compiles_like_text() {
        let text = compile(ORDER, &no_refs()).unwrap();
        let encoded = text.serialized_base64();
        assert_eq!(detect_form(&encoded), SchemaForm::Descriptor);
        assert_eq!(detect_form(ORDER), SchemaForm::Text);
        let from_descriptor = compile(&encoded, &no_refs()).unwrap();
        assert_eq!(
            from_descriptor.record_type().unwrap().full_name(),
            "shop.v1.Order"
        );
    }

    #[test]
    fn references_resolve_recursively() {
        let mut refs = BTreeMap::new();
        refs.insert(
            "base.proto".to_owned(),
            "syntax = \"proto3\"; package base; message Money { int64 cents = 1; }".to_owned(),
        );
        refs.insert(
            "common.proto".to_owned(),
            "syntax = \"proto3\"; package common; import \"base.proto\"; \
             message Price { base.Money amount = 1; }"
                .to_owned(),
        );
        let schema = compile(
            "syntax = \"proto3\"; import \"common.proto\"; message Item { common.Price price = 1; }",
            &refs,
        )
        .unwrap();
        assert!(schema.pool().get_message_by_name("base.Money").is_some());
    }

    #[test]
    fn referenced_descriptor_form_keeps_its_import_name() {
        let common = compile(
            "syntax = \"proto3\"; package common; message Price { int64 cents = 1; }",
            &no_refs(),
        )
        .unwrap();
        let mut refs = BTreeMap::new();
        refs.insert("shared/common.proto".to_owned(), common.serialized_base64());
        let schema = compile(
            "syntax = \"proto3\"; import \"shared/common.proto\"; message Item { common.Price p = 1; }",
            &refs,
        )
        .unwrap();
        assert!(
            schema
                .pool()
                .get_file_by_name("shared/common.proto")
                .is_some()
        );
    }

    #[test]
    fn bad_schemas_are_errors() {
        for bad in [
            "syntax = \"proto3\"; message {",
            "syntax = \"proto3\"; message A { Missing m = 1; }",
            "syntax = \"proto3\"; import \"nowhere.proto\"; message A {}",
            "syntax = \"proto3\"; message A { string a = 1; int32 b = 1; }",
        ] {
            match compile(bad, &no_refs()) {
                Err(ProtoError::InvalidSchema(msg)) => assert!(!msg.is_empty()),
                other => panic!("expected an invalid-schema error for {bad:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_descriptor_falls_back_to_text_and_fails_cleanly() {
        // Base64 characters only, but not a descriptor: treated as text.
        assert_eq!(detect_form("QUJD"), SchemaForm::Text);
        assert!(compile("QUJD", &no_refs()).is_err());
    }

    #[test]
    fn embedded_files_are_importable() {
        let schema = compile(
            r#"syntax = "proto3";
               import "sluice/policy/v1/policy.proto";
               import "buf/validate/validate.proto";
               message User {
                 option (sluice.policy.v1.message) = { sensitivity: "internal" };
                 string email = 1 [
                   (sluice.policy.v1.field) = { purposes: ["billing"], sensitivity: "pii" },
                   (buf.validate.field).string.email = true
                 ];
                 string nickname = 2;
               }"#,
            &no_refs(),
        )
        .unwrap();
        let user = schema.record_type().unwrap();
        let email = user.get_field_by_name("email").unwrap();
        let policy = crate::field_policy(&email).unwrap();
        assert_eq!(policy.purposes, vec!["billing".to_owned()]);
        assert_eq!(policy.sensitivity, "pii");
        let nickname = user.get_field_by_name("nickname").unwrap();
        assert_eq!(
            crate::field_policy(&nickname).unwrap().sensitivity,
            "internal"
        );
    }
}
