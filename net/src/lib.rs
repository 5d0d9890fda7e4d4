//! # quickv-net: the runtime networking nodes and clients share
//!
//! The layer between core's sans-IO machines and the network, used by the node
//! (`quickv-server`) and the smart client (`quickv-client`) alike:
//!
//! - [`transport`]: requests over QUIC, one bidirectional stream per request (one frame of
//!   [`quickv_core::wire`] each way), connections pooled per address, a deadline per call;
//! - [`tls`]: the cluster's certificate authority, node identities, the client and server-side
//!   TLS settings and the one crypto provider of the build.
//!
//! It decides nothing about quickv itself: that is core's work.

pub mod tls;
pub mod transport;
