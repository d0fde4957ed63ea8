pub mod acl;
pub mod grants;
pub mod http_auth;
pub mod sasl;
pub mod scram;
pub mod settings;
pub mod tls;
