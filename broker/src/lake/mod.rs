pub mod archiver;
pub mod maintenance;
