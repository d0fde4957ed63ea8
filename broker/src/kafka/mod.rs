//! The Kafka wire protocol: [`connection`] (one client connection: read
//! frames, SASL, run handlers concurrently, write responses), [`codec`]
//! (frames to typed requests and back, supported versions; no I/O),
//! [`session`] (`ConnContext`: principal, purpose, produce order, throttle)
//! and [`handlers`] (one file per Kafka API).
//!
//! May use: `node` (`SharedBroker`), `coordinator`, `policy`, `security`,
//! `log`, `cluster`, `store` and `common`.
//!
//! Contract: a connection's responses go out in request order and its
//! produce batches are stored in request order; a request that touches a
//! resource is authorized through `ConnContext` before it acts.

pub mod codec;
pub mod connection;
pub mod handlers;
pub mod session;
