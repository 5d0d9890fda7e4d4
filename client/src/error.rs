//! One error enum per client operation. Each says what failed and whether trying again may help
//! (`is_retryable`).

use std::net::SocketAddr;

use quickv_core::coordinator;
use quickv_core::error::{ErrorKind, Refusal};
use quickv_core::identity::NodeId;
use quickv_core::store::{LimitError, QuorumKind, StoreName};
use quickv_core::version::ContextError;

use quickv_net::tls::TlsError;

/// Why [`ClientBuilder::build`](crate::ClientBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No seed address was given.
    #[error("no seed addresses: give at least one node address (for example 127.0.0.1:7101)")]
    NoSeeds,
    /// No CA certificate was given.
    #[error("no cluster CA certificate: nodes cannot be verified without it")]
    NoCa,
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The local endpoint could not be opened.
    #[error("cannot open a local QUIC endpoint: {0}")]
    Endpoint(#[from] std::io::Error),
    /// A seed is not an address: `IP:port` or `host:port` that resolves.
    #[error("seed {seed:?} is not a node address ({reason}): give IP:port or host:port, for example 127.0.0.1:7101")]
    BadSeed {
        /// The seed as given.
        seed: String,
        /// Why it could not be resolved.
        reason: String,
    },
    /// No seed answered with a cluster view.
    #[error(
        "no seed answered: {}; check that quickv nodes run at these addresses and that the CA is the cluster's (the ca.pem quickv-node init or dev wrote)",
        describe(.0)
    )]
    Unreachable(Vec<(SocketAddr, String)>),
}

impl ConnectError {
    /// Whether building again may succeed (seeds may come up).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Unreachable(_))
    }
}

/// Why a cluster view could not be refreshed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// No known node answered.
    #[error("no node answered: {}", describe(.0))]
    Unreachable(Vec<(SocketAddr, String)>),
}

/// Why a store handle could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The name is not a valid store name.
    #[error(transparent)]
    InvalidName(#[from] quickv_core::store::StoreNameError),
    /// No such store in the cluster.
    #[error("store {0} does not exist (create it with `quickv store create {0}`)")]
    Unknown(StoreName),
    /// The catalogue could not be refreshed.
    #[error(transparent)]
    Refresh(#[from] RefreshError),
}

impl StoreError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Refresh(_))
    }
}

/// Why a get failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The key is empty or over the key limit.
    #[error(transparent)]
    InvalidKey(LimitError),
    /// Fewer than R replicas answered. Retryable.
    #[error("not enough replicas answered: {answered} of the {required} required (R){}", quorum.failure_note())]
    Unavailable {
        /// R.
        required: usize,
        /// Replicas that answered.
        answered: usize,
        /// The store's quorum kind (a strict store never counts fallbacks, and says so).
        quorum: QuorumKind,
    },
    /// The cluster has no node that owns data yet. Retryable.
    #[error("the cluster has no nodes that hold data yet")]
    NoNodes,
    /// A node refused the request (for example an unknown store). Not retryable as is.
    #[error("refused by the cluster: {0}")]
    Refused(Refusal),
}

impl GetError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, GetError::Unavailable { .. } | GetError::NoNodes)
    }
}

/// Why a put or a delete failed (a delete is a put of a tombstone, and fails the same ways).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// The key is empty, or the key or value is over a limit.
    #[error(transparent)]
    OverLimit(LimitError),
    /// The causal context is not a valid token.
    #[error("invalid causal context: {0}")]
    InvalidContext(#[from] ContextError),
    /// Fewer than W nodes acknowledged. Retryable; when `acknowledged > 0` the write is stored
    /// on that many nodes and will spread. (The client's own retries send the same write to the
    /// same node, so they never make a second version of it.)
    #[error("not enough replicas acknowledged: {acknowledged} of the {required} required (W){}", quorum.failure_note())]
    Unavailable {
        /// W.
        required: usize,
        /// Nodes that acknowledged.
        acknowledged: usize,
        /// The store's quorum kind (a strict store never counts fallbacks, and says so).
        quorum: QuorumKind,
    },
    /// The node asked to apply the write did not answer: it may or may not have applied it
    /// (and if it did, the write will spread). Retryable.
    #[error("no answer from {minter}, asked to apply the write: it may or may not have been applied")]
    Indeterminate {
        /// The node asked to apply the write.
        minter: NodeId,
    },
    /// The cluster has no node that owns data yet. Retryable.
    #[error("the cluster has no nodes that hold data yet")]
    NoNodes,
    /// A node refused the write (for example a context from the future). Not retryable as is.
    #[error("refused by the cluster: {0}")]
    Refused(Refusal),
}

impl PutError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PutError::Unavailable { .. } | PutError::Indeterminate { .. } | PutError::NoNodes)
    }
}

/// Why a store could not be created.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CreateStoreError {
    /// The store exists with other settings (settings are fixed for life), or the settings are
    /// invalid.
    #[error("{0}")]
    Refused(Refusal),
    /// No node could take the request. Retryable.
    #[error(transparent)]
    Unreachable(#[from] RefreshError),
}

/// Why a ring change could not be committed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CommitRingError {
    /// The claimant refused it: the plan changed since it was made (`StaleRing`: look at it
    /// again), there is nothing to commit, or the node asked is not the claimant any more.
    #[error("{0}")]
    Refused(Refusal),
    /// The claimant could not be reached. Retryable.
    #[error(transparent)]
    Unreachable(#[from] RefreshError),
}

impl CommitRingError {
    /// Whether trying again may help (after looking at the plan again when it was refused as
    /// stale).
    pub fn is_retryable(&self) -> bool {
        match self {
            CommitRingError::Refused(r) => r.kind.is_retryable(),
            CommitRingError::Unreachable(_) => true,
        }
    }
}

/// Why a node could not be drained or removed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NodeChangeError {
    /// The cluster has no node of this id.
    #[error("there is no node {0} in the cluster")]
    UnknownNode(NodeId),
    /// The node asked refused: the node is the cluster's last member, it has left already, or
    /// (for a removal) it is up and should be drained with a leave instead.
    #[error("{0}")]
    Refused(Refusal),
    /// No node that could take it was reached. Retryable.
    #[error(transparent)]
    Unreachable(#[from] RefreshError),
}

impl NodeChangeError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            NodeChangeError::Refused(r) => r.kind.is_retryable(),
            NodeChangeError::UnknownNode(_) => false,
            NodeChangeError::Unreachable(_) => true,
        }
    }
}

impl CreateStoreError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CreateStoreError::Unreachable(_))
    }
}

impl From<coordinator::GetError> for GetError {
    fn from(e: coordinator::GetError) -> GetError {
        match e {
            coordinator::GetError::Unavailable { required, answered, quorum } => {
                GetError::Unavailable { required, answered, quorum }
            }
            coordinator::GetError::Refused(reply) => GetError::Refused(reply),
            other => GetError::Refused(Refusal::new(ErrorKind::Internal, other.to_string())),
        }
    }
}

impl From<coordinator::PutError> for PutError {
    fn from(e: coordinator::PutError) -> PutError {
        match e {
            coordinator::PutError::Unavailable { required, acknowledged, quorum, .. } => {
                PutError::Unavailable { required, acknowledged, quorum }
            }
            coordinator::PutError::Indeterminate { minter } => PutError::Indeterminate { minter },
            coordinator::PutError::Refused(reply) => PutError::Refused(reply),
            other => PutError::Refused(Refusal::new(ErrorKind::Internal, other.to_string())),
        }
    }
}

fn describe(failures: &[(SocketAddr, String)]) -> String {
    failures.iter().map(|(a, e)| format!("{a}: {e}")).collect::<Vec<_>>().join("; ")
}
