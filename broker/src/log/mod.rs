pub mod append;
pub mod batch;
pub mod dead_letter;
pub mod read;
pub mod retention;

/// Leader epoch stamped on every stored batch and reported for every
/// partition. Sluice has no replicas to elect, so the epoch never changes.
pub const LEADER_EPOCH: i32 = 0;
