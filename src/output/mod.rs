//! Output: turning result batches into tables for people and files for tools.

pub mod table;
