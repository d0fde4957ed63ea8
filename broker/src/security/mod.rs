//! Who a caller is and what it may do: Kafka ACLs and the `Authorizer`
//! ([`acl`]), SASL PLAIN and SCRAM exchanges ([`sasl`]) over stored SCRAM
//! credentials ([`scram`]), TLS listeners and certificate principals
//! ([`tls`]), HTTP basic and bearer authentication ([`http_auth`]), purpose
//! grants made with the admin API ([`grants`]), and the listener and
//! authentication settings ([`settings`]).
//!
//! May use: `store` (ACLs, credentials, tokens and grants live in the
//! metadata store) and `common` (`HOST:PORT` parsing).
//!
//! Contract: principals are `User:NAME` strings on every interface, and
//! [`ANONYMOUS`] before authentication; an unknown user and a wrong password
//! fail alike; only salted SCRAM keys and token hashes are stored.
//! `Authorizer::allows` always allows with the authorizer off, and refuses
//! when the rules cannot be read.

pub mod acl;
pub mod grants;
pub mod http_auth;
pub mod sasl;
pub mod scram;
pub mod settings;
pub mod tls;

/// The principal of a connection or HTTP request that has not
/// authenticated.
pub const ANONYMOUS: &str = "User:ANONYMOUS";
