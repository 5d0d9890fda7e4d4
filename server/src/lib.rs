//! # quickv-server: the quickv node (not built yet)
//!
//! This crate will hold the node: the QUIC endpoint, storage engines, replica handling,
//! coordination for callers that cannot route, gossip, hinted handoff, read repair and
//! anti-entropy. It drives the state machines of [`quickv_core`] and re-implements none of them.
//!
//! Today it is an empty library: the node arrives with the "working cluster" issue. The
//! workspace builds and tests it so that the crate layout is fixed from the start.

pub use quickv_core as core_api;
