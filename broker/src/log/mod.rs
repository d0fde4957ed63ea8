pub mod append;
pub mod batch;
pub mod dead_letter;
pub mod read;
pub mod retention;
