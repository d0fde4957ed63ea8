pub mod codec;
pub mod connection;
pub mod handlers;
pub mod session;
