//! # quickv-client: the smart client of quickv
//!
//! The client fetches the cluster view (membership, ring and store catalogue) from any seed,
//! computes each key's preference list with `quickv-core`, and sends every request **straight to
//! the key's replicas** over pooled QUIC connections, driving core's coordinators itself: W
//! acknowledgements for a write, R answers for a read, read repair of stale replicas. A node
//! that sees the client route with an old ring says so, and the client refreshes and retries.
//!
//! ```no_run
//! use quickv_client::{Client, ClusterCa, CausalContext, LongestValue};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .seeds(["127.0.0.1:7101"])
//!     .ca_cert(ClusterCa::from_pem_file("quickv-dev/ca.pem")?)
//!     .build()
//!     .await?;
//! let carts = client.store("default").await?;
//!
//! // A blind write, then a read that returns every sibling and the causal context.
//! carts.put("cart:42", b"apples".to_vec(), &CausalContext::empty()).await?;
//! let read = carts.get("cart:42").await?;
//! assert_eq!(read.values.len(), 1);
//!
//! // Writing with the context of the read supersedes every value read.
//! let merged = read.resolve(&LongestValue).expect("present");
//! carts.put("cart:42", merged, &read.context).await?;
//! carts.delete("cart:42", &carts.get("cart:42").await?.context).await?;
//! # Ok(()) }
//! ```
//!
//! Errors are one enum per operation ([`GetError`], [`PutError`], [`StoreError`],
//! [`CreateStoreError`], [`ConnectError`]); each has `is_retryable`. Timeouts, retries, backoff
//! and fallbacks are in [`ClientOptions`].
//!
//! The QUIC transport and TLS come from `quickv-net` (re-exported as [`transport`] and
//! [`tls`]), which nodes share; [`drive`] runs core's coordinators over it.

mod client;
pub mod drive;
mod error;
mod resolver;

pub use quickv_net::{tls, transport};

pub use client::{Backoff, Client, ClientBuilder, ClientOptions, Holding, Location, PlannedChange, Store, Versions};
pub use error::{
    CommitRingError, ConnectError, CreateStoreError, GetError, NodeChangeError, PutError, RefreshError, StoreError,
};
pub use quickv_core::cluster::{ClusterView, Transition};
pub use quickv_core::error::{ErrorKind, Refusal};
pub use quickv_core::identity::NodeId;
pub use quickv_core::liveness::{PeerReport, PeerState, StatusReport, TransferReport};
pub use quickv_core::membership::{NodeInfo, NodeStatus};
pub use quickv_core::ring::{PlannedNode, RingPlan, RingVersion};
pub use quickv_core::routing::RoutingTable;
pub use quickv_core::store::{ConflictPolicy, Limits, Preset, QuorumKind, StoreConfig, StoreName};
pub use quickv_core::version::{CausalContext, Value};
pub use resolver::{LongestValue, Resolver};
pub use tls::{ClusterCa, NodeIdentity};
