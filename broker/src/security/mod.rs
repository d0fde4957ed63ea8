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
