//! Consumer groups ([`groups`]): the classic group protocol (members,
//! rebalances, relaying the leader's assignments) and committed offsets,
//! behind one handle, `Coordinator`, which the Kafka handlers call.
//!
//! May use: `cluster` (the group lease names the broker that coordinates a
//! group) and `store` (group state and committed offsets).
//!
//! Contract: only the broker holding a group's lease serves it (the others
//! answer NOT_COORDINATOR); committed offsets are stored before the commit
//! is answered, and a group's state after every rebalance, so a restarted
//! or new coordinator resumes where the last one stopped.

pub mod groups;
pub mod transactions;
