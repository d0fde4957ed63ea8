//! What a record must be and which of its fields a reader gets:
//! produce-time validation against the schema registry ([`validation`]),
//! field redaction by the consumer's declared purpose ([`purposes`]),
//! client byte-rate quotas ([`quotas`]), and the same checks packaged for
//! `sluice gateway` ([`gateway_policy`]).
//!
//! May use: `log` (record batch parsing), `security` (principals, purpose
//! grants), `store` (topic records and configs, stored quotas), `common`.
//!
//! Contract: records are validated and redacted the same way through a
//! Sluice broker and through the gateway; a purpose or sensitivity class
//! the policy file does not grant fails closed; quotas are stored, so every
//! broker enforces the same ones, while each measures the traffic it serves.

pub mod gateway_policy;
pub mod purposes;
pub mod quotas;
pub mod validation;
