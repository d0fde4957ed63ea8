//! Protobuf machinery for Sluice: schema compilation, record decoding,
//! validation and redaction, and the Confluent wire framing.
//!
//! Not built yet: the broker currently stores and serves record bytes
//! without decoding them. Schema validation lands here (see the design's
//! data flow: "validate each record").
