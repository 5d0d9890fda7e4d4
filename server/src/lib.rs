//! # quickv-server: the quickv node
//!
//! Placeholder while the node is assembled.

pub mod storage;
