//! # quickv-client: the smart client (not built yet)
//!
//! This crate will hold the async smart client, which computes the ring locally with
//! [`quickv_core`] and sends every request straight to the key's replicas, driving core's
//! coordinators itself; and the `quickv` command-line tool.
//!
//! Today it is an empty library: the client arrives with the "working cluster" issue.

pub use quickv_core as core_api;
