pub mod meta;
pub mod objects;
pub mod schema_store;
pub mod topic_config;
