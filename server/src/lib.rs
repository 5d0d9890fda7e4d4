//! # quickv-server: the quickv node
//!
//! A node serves the keys it holds a replica of, coordinates requests for callers that cannot
//! route, and keeps its cluster view (membership, ring, store catalogue) in step with its peers.
//!
//! ```no_run
//! use quickv_server::node::{Node, NodeConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! quickv_server::pki::init_cluster("cluster".as_ref())?;
//! let first = Node::start(NodeConfig::new("cluster/n1", "cluster", "127.0.0.1:7101".parse()?)).await?;
//! let mut second = NodeConfig::new("cluster/n2", "cluster", "127.0.0.1:7102".parse()?);
//! second.seeds = vec!["127.0.0.1:7101".parse()?];
//! let second = Node::start(second).await?;
//! // ... serve ...
//! second.shutdown().await;
//! first.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Modules: [`pki`] (the cluster CA and node certificates), [`storage`] (engines and the record
//! format), and [`node`] (the node process: core's node machine over QUIC and an engine).
//! The `quickv-node` binary wraps these as `dev`, `init` and `run` commands.

pub mod node;
pub mod pki;
pub mod storage;
