//! The assembled broker: [`config`] (flags, `SLUICE_*` variables and the
//! TOML file, resolved into `Config`) and [`state`] (`Broker`, the handles
//! every connection and handler shares, as `SharedBroker`).
//!
//! May use: `coordinator`, `policy`, `security`, `log`, `cluster`, `store`
//! and `common`.
//!
//! Contract: a `Broker` holds one of each service (metadata store,
//! segments, appender, group coordinator, validator, authorizer, quotas,
//! redactor, cluster view) and provides what lower layers ask for by trait,
//! such as `log::read::Stores`. Its topic cache is read again after a
//! second when other brokers share the store. It starts no tasks:
//! `ops::server` builds it and runs them.

pub mod config;
pub mod state;
