//! Consumer groups ([`groups`]): the classic group protocol (members,
//! rebalances, relaying the leader's assignments) and committed offsets,
//! behind one handle, `Coordinator`, which the Kafka handlers call.
//! Transactions ([`transactions`]): producer ids and epochs for
//! transactional ids and the life of each transaction, behind
//! `Transactions`.
//!
//! May use: `cluster` (the group lease names the broker that coordinates a
//! group; the upkeep lease names the one that times transactions out),
//! `log` (transaction markers are appended like any batch) and `store`
//! (group state, committed offsets, transaction state).
//!
//! Contract: only the broker holding a group's lease serves it (the others
//! answer NOT_COORDINATOR); committed offsets are stored before the commit
//! is answered, and a group's state after every rebalance, so a restarted
//! or new coordinator resumes where the last one stopped. Any broker serves
//! any transactional id: each step is a compare-and-set in the metadata
//! store, and EndTxn is answered only once every marker is stored.

pub mod groups;
pub mod transactions;
