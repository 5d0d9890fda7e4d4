//! Wire messages between callers and nodes, and between nodes.
//!
//! A frame is one version byte ([`WIRE_VERSION`]) followed by the postcard encoding of a
//! [`Message`]. [`decode`] refuses other versions, trailing bytes and contents that break the
//! types' invariants (invalid names, malformed versions), and never panics whatever the bytes.
//! Frame length limits are the transport's: see [`MAX_FRAME`].
//!
//! ```
//! use quickv_core::{store::StoreName, wire::{self, Message, Request}};
//!
//! let msg = Message::Request { id: 7, body: Request::Get { store: StoreName::new("default")?, key: b"k".to_vec() } };
//! let bytes = wire::encode(&msg);
//! assert_eq!(bytes[0], wire::WIRE_VERSION);
//! assert_eq!(wire::decode(&bytes)?, msg);
//! assert!(wire::decode(&[wire::WIRE_VERSION, 0xff]).is_err());
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterView;
pub use crate::error::ErrorKind;
use crate::error::Refusal;
use crate::gossip::{GossipDigest, MAX_VERDICTS, ViewWord};
use crate::identity::NodeId;
use crate::liveness::StatusReport;
use crate::membership::NodeInfo;
use crate::ring::RingVersion;
use crate::store::{StoreConfig, StoreName};
use crate::version::{SealedState, Siblings, Write};

mod v1;
mod v2;
mod v6;

/// Version of the frame format this build speaks.
pub const WIRE_VERSION: u8 = 9;

/// Largest frame a node accepts by default: the default value limit (16 MiB) plus room for the
/// key (65,535 bytes, the most the engine takes) and the message around them.
/// Equal to `Limits::default().max_frame()` (checked by a test).
pub const MAX_FRAME: usize = 16 * 1024 * 1024 + crate::store::MAX_ENGINE_KEY + crate::store::FRAME_OVERHEAD;

/// One frame's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A request; the answer carries the same `id`.
    Request {
        /// Chosen by the sender, echoed in the response.
        id: u64,
        /// What is asked.
        body: Request,
    },
    /// The answer to the request with this `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: Response,
    },
    /// A request routed with the sender's ring: a replica whose ring is another (newer, or of the
    /// same epoch with another digest) answers [`ErrorKind::StaleRing`] naming its ring, so the
    /// sender refreshes its view (from that node) and routes again. A replica whose ring is
    /// older serves the request and catches up.
    Routed {
        /// Chosen by the sender, echoed in the response.
        id: u64,
        /// The ring the sender routed with.
        ring: RingVersion,
        /// What is asked.
        body: Request,
    },
}

/// What a caller or a peer asks a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Replica read: your state of `key`.
    Get {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
    },
    /// Replica write, first step: apply `write` minting its dot, answer with the new state.
    Mint {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// The caller's write.
        write: Write,
        /// Set when the receiver holds the write for an unreachable primary.
        hint_for: Option<NodeId>,
    },
    /// Replica write, second step (also read repair and handoff): merge this state.
    Replicate {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// The state to merge.
        siblings: Siblings,
        /// Set when the receiver holds the write for an unreachable primary.
        hint_for: Option<NodeId>,
    },
    /// For callers that cannot route: coordinate a whole get of `key`.
    CoordinateGet {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
    },
    /// For callers that cannot route: coordinate a whole put or delete.
    CoordinatePut {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// The write. Name it ([`Write::with_id`]) so that a retry is recognised; a node names a
        /// write that has no id.
        write: Write,
        /// On a retry, the node the failed attempt's error named ([`ErrorReply::minter`]): the
        /// write goes to that node only, so it never becomes two versions.
        minter: Option<NodeId>,
    },
    /// Create a store with a configuration fixed for life.
    CreateStore {
        /// Its name.
        name: StoreName,
        /// Its configuration.
        config: StoreConfig,
    },
    /// A gossip message (see [`crate::gossip`]): the receiver takes the sender's heartbeat,
    /// verdicts and news, and answers [`Response::Gossip`] with its own digest (whole when the
    /// summaries differ) and, when the sender sent its whole digest, the parts of its view the
    /// sender lacks. Only nodes may send it.
    Gossip {
        /// The sender's id (believed only if its entry names the certificate it presents).
        from: NodeId,
        /// The sender's digest.
        digest: alloc::boxed::Box<GossipDigest>,
    },
    /// A node asks to join (or updates its entry): the receiver adds the entry to its view and
    /// answers with the whole view. Only nodes with a cluster certificate may send it.
    Join {
        /// The joining node's entry.
        node: NodeInfo,
    },
    /// Your cluster view, please (clients: membership, ring and store catalogue).
    Cluster,
    /// Merge this cluster view, or part of one (a gossip delta); answered `Ack`. Only nodes may
    /// send it.
    Sync {
        /// The sender's view.
        view: ClusterView,
    },
    /// Drop a store: it stops existing, its name is not used again, every node deletes its data.
    /// Answered `Ack` once the catalogue without it is saved.
    DropStore {
        /// Its name.
        name: StoreName,
    },
    /// What the node sees: its view and each peer's liveness (`quickv status`). Answered
    /// [`Response::Status`].
    Status,
    /// Anti-entropy, first step (nodes only): the sender's digests of the partitions of `store`
    /// it shares with the receiver in the ring with digest `ring`, `bucket` partitions to a
    /// digest, in partition order. Answered [`Response::TreeBuckets`] with the buckets whose
    /// digests differ (see `node::anti_entropy`).
    TreeBuckets {
        /// The store.
        store: StoreName,
        /// The digest of the ring the sender computed the shared partitions with.
        ring: u64,
        /// Partitions per bucket.
        bucket: u32,
        /// One digest per bucket.
        digests: Vec<u64>,
    },
    /// Anti-entropy, second step (nodes only): the sender's Merkle tree leaves of these
    /// partitions of `store` (an empty list: it holds nothing there). Answered
    /// [`Response::TreeKeys`].
    TreeLeaves {
        /// The store.
        store: StoreName,
        /// The digest of the sender's ring.
        ring: u64,
        /// Each partition with its leaves.
        partitions: Vec<(u32, Vec<u64>)>,
    },
    /// Tombstone collection, first step (nodes only): what the receiver holds of `key` in
    /// `store`, read from its storage. Answered [`Response::Held`] (see `node::tombstones`).
    TombstoneCheck {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
    },
    /// Tombstone collection, last step (nodes only): remove the record of `key` in `store` if it
    /// still is `siblings` (a tombstone every replica holds) and the receiver holds no hint for
    /// the key. Answered [`Response::Collected`].
    Collect {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// The tombstone being collected.
        siblings: Siblings,
    },
    /// Apply the planned ring change (`quickv cluster commit`, for nodes that wait for one:
    /// [`NodeConfig::automatic_ring_changes`](crate::node::NodeConfig::automatic_ring_changes)).
    /// Only the claimant applies it, and only if its plan still moves to `plan` (a plan that
    /// changed since it was looked at is refused `StaleRing`); answered `Ack` once the new ring
    /// is saved. Other nodes answer `Unavailable` naming the claimant.
    CommitRing {
        /// The ring the plan moves to ([`crate::ring::RingPlan::next`]).
        plan: RingVersion,
    },
    /// Drain this node (`quickv node leave`): it hands its partitions to their new owners, then
    /// leaves the cluster (see `node::departure`). Only the node named takes it (others answer
    /// `Unavailable` naming its address); answered `Ack` once its leaving entry is saved.
    Leave {
        /// The node to drain: the receiver itself.
        node: NodeId,
    },
    /// Remove a node that is gone for good (`quickv node remove`): its partitions are
    /// re-replicated from the surviving replicas. Refused `NotPermitted` while the receiver
    /// holds the node up; answered `Ack` once the removal is saved.
    RemoveNode {
        /// The node to remove.
        node: NodeId,
    },
    /// A no-op on the request path (`quickv bench ping`): passes the checks a replica read of
    /// `key` passes (store, key limits, the routing check of a [`Message::Routed`] request),
    /// then is answered `Ack` without touching storage. `payload` is carried and dropped, so a
    /// ping can weigh what a write of that value weighs on the wire: the transport's ceiling.
    Ping {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// Bytes carried and dropped.
        payload: Vec<u8>,
    },
}

impl Request {
    /// The request's name in `snake_case`, as metrics and logs label it.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Get { .. } => "get",
            Request::Mint { .. } => "mint",
            Request::Replicate { .. } => "replicate",
            Request::CoordinateGet { .. } => "coordinate_get",
            Request::CoordinatePut { .. } => "coordinate_put",
            Request::CreateStore { .. } => "create_store",
            Request::Gossip { .. } => "gossip",
            Request::Join { .. } => "join",
            Request::Cluster => "cluster",
            Request::Sync { .. } => "sync",
            Request::DropStore { .. } => "drop_store",
            Request::Status => "status",
            Request::TreeBuckets { .. } => "tree_buckets",
            Request::TreeLeaves { .. } => "tree_leaves",
            Request::TombstoneCheck { .. } => "tombstone_check",
            Request::Collect { .. } => "collect",
            Request::CommitRing { .. } => "commit_ring",
            Request::Leave { .. } => "leave",
            Request::RemoveNode { .. } => "remove_node",
            Request::Ping { .. } => "ping",
        }
    }
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A key's state, sealed for the caller's context; `None` if the node has none.
    State(Option<SealedState>),
    /// Done.
    Ack,
    /// The answer to a gossip round.
    Gossip {
        /// The receiver's digest: its heartbeat, news and verdicts, its view summarised or whole.
        digest: alloc::boxed::Box<GossipDigest>,
        /// The parts of the receiver's view that differ from the sender's whole digest.
        delta: Option<ClusterView>,
    },
    /// The request failed.
    Error(ErrorReply),
    /// A cluster view.
    Cluster(ClusterView),
    /// What a node sees (the answer to [`Request::Status`]).
    Status(Box<StatusReport>),
    /// The buckets whose digests differ (the answer to [`Request::TreeBuckets`]).
    TreeBuckets(Vec<u32>),
    /// The answer to [`Request::TreeLeaves`]: the leaves that differ, as (partition, leaf), and
    /// every key the answering node holds in them with the digest of its state.
    TreeKeys {
        /// The leaves that differ.
        leaves: Vec<(u32, u32)>,
        /// The keys in them, with their digests.
        keys: Vec<(Vec<u8>, u64)>,
    },
    /// The answer to [`Request::TombstoneCheck`]: the receiver's state of the key (`None`: it
    /// stores nothing under it), and whether it holds a hint for the key.
    Held {
        /// The stored state.
        siblings: Option<Siblings>,
        /// Whether a hint of the key waits to be handed to a primary.
        hinted: bool,
    },
    /// The answer to [`Request::Collect`]: whether the key is gone from the receiver's storage
    /// (removed now, or stored nothing); `false`: its record changed or a hint is held, so it
    /// was kept.
    Collected(bool),
}

/// A failed request, as sent back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// A lowercase, human-readable message.
    pub message: String,
    /// For a write that failed [`Indeterminate`](ErrorKind::Indeterminate) or
    /// [`Unavailable`](ErrorKind::Unavailable) after a node applied it (or may have): that node.
    /// A retry of the same write names it in [`Request::CoordinatePut::minter`].
    pub minter: Option<NodeId>,
}

impl ErrorReply {
    /// A reply of this kind with this message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorReply {
        ErrorReply { kind, message: message.into(), minter: None }
    }

    /// The refusal this reply carries (its kind and message; the minter is the wire's).
    pub fn into_refusal(self) -> Refusal {
        Refusal { kind: self.kind, message: self.message }
    }

    /// The same reply naming the node a retry of the write must go to.
    pub fn with_minter(self, minter: Option<NodeId>) -> ErrorReply {
        ErrorReply { minter, ..self }
    }
}

impl From<Refusal> for ErrorReply {
    fn from(refusal: Refusal) -> ErrorReply {
        ErrorReply::new(refusal.kind, refusal.message)
    }
}

impl core::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes at all.
    #[error("frame is empty")]
    Empty,
    /// Another version of the format.
    #[error("frame has wire version {0}, this build speaks version {WIRE_VERSION}")]
    UnsupportedVersion(u8),
    /// The bytes are not a message.
    #[error("frame is malformed")]
    Malformed,
    /// A message followed by extra bytes.
    #[error("frame has {0} bytes after the message")]
    TrailingBytes(usize),
    /// The message decoded but breaks an invariant.
    #[error("frame content is invalid: {0}")]
    Invalid(&'static str),
    /// A gossip or status message of a version before gossip sent digests (before 5): nodes
    /// gossip only with nodes of this version.
    #[error(
        "frame has wire version {0}, whose gossip sends whole membership views; nodes gossip digests at version {WIRE_VERSION}: upgrade the node that sent it"
    )]
    GossipBeforeDigests(u8),
    /// A gossip message of a version before gossip sent summaries and verdicts (5): its digests
    /// carry every node's heartbeat; nodes gossip only with nodes of this version.
    #[error(
        "frame has wire version {0}, whose gossip carries every node's heartbeat; nodes gossip summaries and verdicts at version {WIRE_VERSION}: upgrade the node that sent it"
    )]
    GossipBeforeVerdicts(u8),
    /// A membership message of a version before node entries named certificates (before 4):
    /// nodes exchange membership only with nodes of this version.
    #[error(
        "frame has wire version {0}, whose node entries name no certificate; membership is exchanged only at version {WIRE_VERSION}: upgrade the node that sent it"
    )]
    MembershipBeforeCertificates(u8),
    /// A membership message of a version before node entries published their web access
    /// (before 9): nodes exchange membership only with nodes of this version.
    #[error(
        "frame has wire version {0}, whose node entries publish no web access; membership is exchanged only at version {WIRE_VERSION}: upgrade the node that sent it"
    )]
    MembershipBeforeWebAccess(u8),
    /// A request routed with a ring's epoch only (before 7): replicas compare the ring's epoch
    /// and digest.
    #[error(
        "frame has wire version {0}, whose routed requests name the ring's epoch only; requests are routed with the ring's epoch and digest at version {WIRE_VERSION}: upgrade the caller that sent it"
    )]
    RoutedBeforeDigests(u8),
}

/// Encodes a message as a frame.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = alloc::vec![WIRE_VERSION];
    out.extend(crate::encoding::to_vec(message));
    out
}

/// Decodes and checks a frame.
pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
    let (&version, body) = frame.split_first().ok_or(DecodeError::Empty)?;
    let (message, rest) = match version {
        WIRE_VERSION => postcard::take_from_bytes::<Message>(body).map_err(|_| DecodeError::Malformed)?,
        // Version 8 differs from 9 in node entries only (9's publish the node's web access): its
        // other frames read unchanged, its membership frames are refused below.
        8 => postcard::take_from_bytes::<Message>(body).map_err(|_| DecodeError::UnsupportedVersion(8))?,
        // Version 7 differs from 8 in status answers only (8's end with the node's transfer
        // progress): its other frames read unchanged, its status answers do not decode.
        7 => postcard::take_from_bytes::<Message>(body).map_err(|_| DecodeError::UnsupportedVersion(7))?,
        // Version 6 differs from 7 in routed requests (the ring's epoch only): other messages
        // read unchanged; its routed requests are refused.
        6 => v6::take(body, 6)?,
        // Version 5 differs from 6 in gossip (digests with every node's heartbeat) and in status
        // answers (no damage report): other messages read as 6's; its gossip frames are
        // refused below, its status answers do not decode.
        5 => v6::take(body, 5)?,
        // Version 4 differs from 5 in gossip only (whole membership views, not digests): other
        // messages read as 5's; its gossip frames are refused below or do not decode.
        4 => v6::take(body, 4)?,
        // Version 3 differs from 4 in node entries (no certificate) and writes (no `resent`):
        // other messages read as 4's; membership messages are refused below, and writes do
        // not decode.
        3 => v6::take(body, 3)?,
        2 => {
            let (old, rest) = postcard::take_from_bytes::<v2::Message>(body).map_err(|_| DecodeError::Malformed)?;
            (old.into_current()?, rest)
        }
        1 => {
            let (old, rest) = postcard::take_from_bytes::<v1::Message>(body).map_err(|_| DecodeError::Malformed)?;
            (old.into_current()?, rest)
        }
        other => return Err(DecodeError::UnsupportedVersion(other)),
    };
    if version < 4 && carries_node_entries(&message) {
        return Err(DecodeError::MembershipBeforeCertificates(version));
    }
    if version < 5 && is_gossip(&message) {
        return Err(DecodeError::GossipBeforeDigests(version));
    }
    if version < 6 && is_gossip_round(&message) {
        return Err(DecodeError::GossipBeforeVerdicts(version));
    }
    if version < 9 && carries_node_entries(&message) {
        return Err(DecodeError::MembershipBeforeWebAccess(version));
    }
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    check(&message)?;
    Ok(message)
}

/// Whether a message is a gossip round or its answer, or a status (whose layout changed in
/// version 5).
fn is_gossip(message: &Message) -> bool {
    match message {
        Message::Request { body, .. } | Message::Routed { body, .. } => {
            matches!(body, Request::Gossip { .. } | Request::Status)
        }
        Message::Response { body, .. } => matches!(body, Response::Gossip { .. } | Response::Status(_)),
    }
}

/// Whether a message is a gossip round or its answer (whose layout changed in version 6).
fn is_gossip_round(message: &Message) -> bool {
    match message {
        Message::Request { body, .. } | Message::Routed { body, .. } => matches!(body, Request::Gossip { .. }),
        Message::Response { body, .. } => matches!(body, Response::Gossip { .. }),
    }
}

/// Whether a message carries node entries (whose layout changed in versions 4 and 9).
fn carries_node_entries(message: &Message) -> bool {
    match message {
        Message::Request { body, .. } | Message::Routed { body, .. } => {
            matches!(body, Request::Join { .. } | Request::Sync { .. } | Request::Gossip { .. })
        }
        Message::Response { body, .. } => {
            matches!(body, Response::Cluster(_) | Response::Gossip { .. } | Response::Status(_))
        }
    }
}

/// A whole digest's entries are ordered by id, each id once (so lookups by id are sound); news
/// is a consistent view; a message carries at most [`MAX_VERDICTS`] verdicts.
fn digest_ok(digest: &GossipDigest) -> Result<(), DecodeError> {
    if let ViewWord::Whole(whole) = &digest.view
        && !whole.is_well_formed()
    {
        return Err(DecodeError::Invalid("gossip digest entries out of order"));
    }
    if digest.verdicts.len() > MAX_VERDICTS {
        return Err(DecodeError::Invalid("gossip message carries too many verdicts"));
    }
    match &digest.news {
        Some(news) => news.validate().map_err(|_| DecodeError::Invalid("inconsistent gossip news")),
        None => Ok(()),
    }
}

fn check(message: &Message) -> Result<(), DecodeError> {
    let siblings_ok = |s: &Siblings| s.validate().map_err(|_| DecodeError::Invalid("malformed sibling state"));
    let write_ok = |w: &Write| {
        if w.context.is_well_formed() { Ok(()) } else { Err(DecodeError::Invalid("malformed causal context")) }
    };
    let view_ok = |v: &ClusterView| v.validate().map_err(|_| DecodeError::Invalid("inconsistent cluster view"));
    match message {
        Message::Request { body, .. } | Message::Routed { body, .. } => match body {
            Request::Mint { write, .. } | Request::CoordinatePut { write, .. } => write_ok(write),
            Request::Replicate { siblings, .. } | Request::Collect { siblings, .. } => siblings_ok(siblings),
            Request::CreateStore { config, .. } => {
                config.validate().map_err(|_| DecodeError::Invalid("invalid store configuration"))
            }
            Request::Sync { view } => view_ok(view),
            Request::Gossip { digest, .. } => digest_ok(digest),
            Request::Get { .. }
            | Request::CommitRing { .. }
            | Request::Leave { .. }
            | Request::RemoveNode { .. }
            | Request::CoordinateGet { .. }
            | Request::Join { .. }
            | Request::Cluster
            | Request::Status
            | Request::TreeBuckets { .. }
            | Request::TreeLeaves { .. }
            | Request::TombstoneCheck { .. }
            | Request::DropStore { .. }
            | Request::Ping { .. } => Ok(()),
        },
        Message::Response { body: Response::Gossip { digest, delta }, .. } => {
            digest_ok(digest)?;
            delta.as_ref().map_or(Ok(()), view_ok)
        }
        Message::Response { body: Response::Status(report), .. } => view_ok(&report.view),
        Message::Response { body: Response::State(Some(state)), .. } => siblings_ok(&state.siblings),
        Message::Response { body: Response::Held { siblings: Some(siblings), .. }, .. } => siblings_ok(siblings),
        Message::Response { body: Response::Cluster(view), .. } => view_ok(view),
        Message::Response { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ConflictPolicy;
    use crate::version::CausalContext;
    use proptest::prelude::*;

    fn store() -> StoreName {
        StoreName::new("default").unwrap()
    }

    fn samples() -> Vec<Message> {
        let a = NodeId::new("a").unwrap();
        let mut s = Siblings::new();
        s.apply(&a, &Write::put(b"v".to_vec(), CausalContext::empty(), 5), ConflictPolicy::Siblings).unwrap();
        let sealed = crate::version::ContextKey::new([2; 32]).seal(&store(), b"k", s.clone());
        let write = Write::put(b"w".to_vec(), sealed.context(), 6);
        let info = NodeInfo::new("a", "127.0.0.1:7101", "z1", 2).unwrap();
        let mut view = ClusterView::new(4);
        view.upsert_node(info.clone()).unwrap();
        let req = |id, body| Message::Request { id, body };
        let heartbeat = crate::gossip::Heartbeat { generation: 1_700_000_000_000, beat: 42 };
        let summary = GossipDigest {
            view: ViewWord::Summary(view.digest().summary()),
            heartbeat,
            news: Some(alloc::boxed::Box::new(view.clone())),
            verdicts: alloc::vec![crate::gossip::Verdict {
                subject: a.clone(),
                observer: NodeId::new("b").unwrap(),
                at: heartbeat,
                state: crate::liveness::PeerState::Down,
            }],
        };
        let whole = GossipDigest { view: ViewWord::Whole(view.digest()), heartbeat, news: None, verdicts: Vec::new() };
        alloc::vec![
            req(1, Request::Get { store: store(), key: b"k".to_vec() }),
            req(
                2,
                Request::Mint { store: store(), key: b"k".to_vec(), write: write.clone(), hint_for: Some(a.clone()) }
            ),
            req(3, Request::Replicate { store: store(), key: b"k".to_vec(), siblings: s.clone(), hint_for: None }),
            req(4, Request::CoordinateGet { store: store(), key: b"k".to_vec() }),
            req(
                5,
                Request::CoordinatePut {
                    store: store(),
                    key: b"k".to_vec(),
                    write: Write::delete(sealed.context(), 9),
                    minter: None
                }
            ),
            req(6, Request::CreateStore { name: store(), config: StoreConfig::strict() }),
            req(7, Request::Gossip { from: a.clone(), digest: Box::new(summary.clone()) }),
            req(15, Request::Gossip { from: a.clone(), digest: Box::new(whole.clone()) }),
            req(8, Request::Join { node: info }),
            req(9, Request::Cluster),
            req(10, Request::Sync { view: view.clone() }),
            Message::Routed {
                id: 11,
                ring: RingVersion { epoch: 3, digest: 0x0123_4567_89ab_cdef },
                body: Request::Get { store: store(), key: b"k".to_vec() },
            },
            Message::Response { id: 6, body: Response::Cluster(view.clone()) },
            Message::Response { id: 1, body: Response::State(Some(sealed)) },
            Message::Response { id: 2, body: Response::State(None) },
            Message::Response { id: 3, body: Response::Ack },
            Message::Response {
                id: 4,
                body: Response::Gossip { digest: Box::new(summary), delta: Some(view.clone()) }
            },
            Message::Response { id: 7, body: Response::Gossip { digest: Box::new(whole), delta: None } },
            req(12, Request::Status),
            req(13, Request::TombstoneCheck { store: store(), key: b"k".to_vec() }),
            req(14, Request::Collect { store: store(), key: b"k".to_vec(), siblings: s.clone() }),
            req(15, Request::CommitRing { plan: RingVersion { epoch: 4, digest: 5 } }),
            req(16, Request::Leave { node: a.clone() }),
            req(17, Request::RemoveNode { node: a.clone() }),
            Message::Response { id: 13, body: Response::Held { siblings: Some(s.clone()), hinted: true } },
            Message::Response { id: 14, body: Response::Collected(false) },
            Message::Response {
                id: 8,
                body: Response::Status(Box::new(StatusReport {
                    node: a.clone(),
                    view: view.clone(),
                    peers: alloc::vec![],
                    damage: crate::liveness::DamageReport { records: 2, repaired: 1, ranges: 1 },
                    stored_bytes: Some(1234),
                    transfer: None,
                })),
            },
            Message::Response {
                id: 5,
                body: Response::Error(ErrorReply::new(ErrorKind::TooLarge, "value is too large")),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_every_truncation_fails() {
        for msg in samples() {
            let bytes = encode(&msg);
            assert_eq!(decode(&bytes), Ok(msg.clone()));
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{msg:?} cut at {cut} decoded");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode(&longer), Err(DecodeError::TrailingBytes(1)));
        }
    }

    /// Frames written by version 1 must keep decoding: this is a get of "k" in "default", id 7.
    #[test]
    fn version_1_frames_still_decode() {
        let v1 = [1u8, 0, 7, 0, 7, b'd', b'e', b'f', b'a', b'u', b'l', b't', 1, b'k'];
        let msg = Message::Request { id: 7, body: Request::Get { store: store(), key: b"k".to_vec() } };
        assert_eq!(decode(&v1), Ok(msg.clone()));
        // Today's encoding differs in the version byte only.
        assert_eq!(encode(&msg)[1..], v1[1..]);
        assert_eq!(encode(&msg)[0], WIRE_VERSION);
    }

    /// A version-2 mint (of "w" to "k" in "default", id 7, with the bare context {a: 3}, at
    /// 6 ms): its context reads as one unsealed part, which nodes refuse until the caller reads
    /// again; a version-2 state answer reads as unsealed.
    #[test]
    fn version_2_frames_decode_with_unsealed_contexts() {
        let mut v2 = alloc::vec![2u8, 0, 7, 1, 7];
        v2.extend(b"default");
        v2.extend([1, b'k', 7, 0, 1, b'w', 1, 1, b'a', 3, 6, 0]);
        let Ok(Message::Request { id: 7, body: Request::Mint { write, hint_for: None, .. } }) = decode(&v2) else {
            panic!("{:?}", decode(&v2))
        };
        assert_eq!(write.id, crate::version::WriteId(7));
        assert_eq!(write.context.vector().counter(&NodeId::new("a").unwrap()), 3);
        assert_eq!(write.context.parts()[0].seal(), crate::version::Seal::NONE);
        let key = crate::version::ContextKey::new([2; 32]);
        assert!(key.check(&store(), b"k", &write.context).is_err());
        // The same write, blind: a blind write still.
        let mut blind = alloc::vec![2u8, 0, 7, 1, 7];
        blind.extend(b"default");
        blind.extend([1, b'k', 7, 0, 1, b'w', 0, 6, 0]);
        let Ok(Message::Request { body: Request::Mint { write, .. }, .. }) = decode(&blind) else { panic!() };
        assert!(write.context.is_empty());
        // An absent key's state answer.
        assert_eq!(decode(&[2, 1, 3, 0, 0]), Ok(Message::Response { id: 3, body: Response::State(None) }));
    }

    /// A version-1 mint (of "w" to "k" in "default", blind, at 6 ms, id 7): its write reads as
    /// having no write id.
    #[test]
    fn version_1_writes_decode_without_a_write_id() {
        let v1 = [1u8, 0, 7, 1, 7, b'd', b'e', b'f', b'a', b'u', b'l', b't', 1, b'k', 0, 1, b'w', 0, 6, 0];
        let write = Write::put(b"w".to_vec(), CausalContext::empty(), 6);
        assert!(write.id.is_none());
        let body = Request::Mint { store: store(), key: b"k".to_vec(), write, hint_for: None };
        assert_eq!(decode(&v1), Ok(Message::Request { id: 7, body }));
    }

    /// Version 3 differs only in node entries (no certificate): its data frames still decode,
    /// its membership frames are refused with a clear error.
    #[test]
    fn version_3_data_frames_decode_and_its_membership_frames_are_refused() {
        let get = Message::Request { id: 4, body: Request::Get { store: store(), key: b"k".to_vec() } };
        let mut v3 = encode(&get);
        v3[0] = 3;
        assert_eq!(decode(&v3), Ok(get));
        // A version-3 mint (its write without `resent`) is refused as of another version.
        let write = Write::put(b"w".to_vec(), CausalContext::empty(), 6);
        let mint = Message::Request {
            id: 6,
            body: Request::Mint { store: store(), key: b"k".to_vec(), write, hint_for: None },
        };
        let mut v3 = encode(&mint);
        v3[0] = 3;
        v3.pop();
        assert_eq!(decode(&v3), Err(DecodeError::UnsupportedVersion(3)));
        let join = Message::Request { id: 5, body: Request::Join { node: NodeInfo::new("a", "b:1", "z", 1).unwrap() } };
        let mut v3 = encode(&join);
        v3[0] = 3;
        assert_eq!(decode(&v3), Err(DecodeError::MembershipBeforeCertificates(3)));
        // As an old node sends it: without the certificate byte.
        v3.pop();
        assert_eq!(decode(&v3), Err(DecodeError::UnsupportedVersion(3)));
        assert!(alloc::format!("{}", DecodeError::MembershipBeforeCertificates(3)).contains("upgrade"));
    }

    /// Version 5 differs only in gossip (digests with every node's heartbeat): its other frames
    /// still decode, its gossip frames are refused with a clear error.
    #[test]
    fn version_5_data_frames_decode_and_its_gossip_frames_are_refused() {
        for message in samples() {
            if matches!(message, Message::Routed { .. }) {
                continue; // its layout changed in 7: see `version_6_routed_requests_are_refused`
            }
            let mut v5 = encode(&message);
            v5[0] = 5;
            if is_gossip_round(&message) {
                assert_eq!(decode(&v5), Err(DecodeError::GossipBeforeVerdicts(5)));
            } else if carries_node_entries(&message) {
                assert_eq!(decode(&v5), Err(DecodeError::MembershipBeforeWebAccess(5)));
            } else {
                assert_eq!(decode(&v5), Ok(message));
            }
        }
        // As an old node sends a round: a digest entry with a heartbeat, which does not decode
        // as a summary (here: the id, version, fingerprint and heartbeat of one entry).
        let mut old = alloc::vec![5u8, 0, 7];
        old.extend([10, 1, b'a']); // Request::Gossip's variant, `from`
        old.extend([4, 1, 1, b'a', 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 3, 0, 0]);
        assert!(decode(&old).is_err());
        assert!(alloc::format!("{}", DecodeError::GossipBeforeVerdicts(5)).contains("upgrade"));
        // A version-5 status answer has no damage report (three varints at its end): it does
        // not decode, as of another version.
        let status = samples().into_iter().find(|m| matches!(m, Message::Response { body: Response::Status(_), .. }));
        let mut v5 = encode(&status.unwrap());
        v5[0] = 5;
        v5.truncate(v5.len() - 1 - 3 - 3); // no transfer (None), stored bytes (Some, two-byte varint), damage report
        assert_eq!(decode(&v5), Err(DecodeError::UnsupportedVersion(5)));
    }

    /// Version 6 routed requests with the ring's epoch only: refused, saying to upgrade the
    /// caller; its status answers (no stored bytes) do not decode; its other frames read
    /// unchanged.
    #[test]
    fn version_6_routed_requests_are_refused_and_its_other_frames_decode() {
        for message in samples() {
            let mut v6 = encode(&message);
            v6[0] = 6;
            match message {
                Message::Routed { .. } => assert!(decode(&v6).is_err()),
                // Version 6's status answers end at the damage report.
                Message::Response { body: Response::Status(_), .. } => {
                    v6.truncate(v6.len() - 1 - 3);
                    assert_eq!(decode(&v6), Err(DecodeError::UnsupportedVersion(6)));
                }
                message if carries_node_entries(&message) => {
                    assert_eq!(decode(&v6), Err(DecodeError::MembershipBeforeWebAccess(6)));
                }
                message => assert_eq!(decode(&v6), Ok(message)),
            }
        }
        // As a version-6 caller sends it: variant 2, id 11, epoch 3, then a replica get.
        let get = Request::Get { store: store(), key: b"k".to_vec() };
        let mut old = alloc::vec![6u8, 2, 11, 3];
        old.extend(crate::encoding::to_vec(&get));
        assert_eq!(decode(&old), Err(DecodeError::RoutedBeforeDigests(6)));
        old[0] = 3;
        assert_eq!(decode(&old), Err(DecodeError::RoutedBeforeDigests(3)));
        assert!(alloc::format!("{}", DecodeError::RoutedBeforeDigests(6)).contains("upgrade the caller"));
        // The same request of today's version names the ring's digest too.
        let ring = RingVersion { epoch: 3, digest: 9 };
        let frame = encode(&Message::Routed { id: 11, ring, body: get.clone() });
        assert_eq!(decode(&frame), Ok(Message::Routed { id: 11, ring, body: get }));
    }

    /// Version 7 status answers (no transfer progress) do not decode, as of another version;
    /// its other frames read unchanged.
    #[test]
    fn version_7_frames_decode_but_its_status_answers() {
        for message in samples() {
            let mut v7 = encode(&message);
            v7[0] = 7;
            match message {
                Message::Response { body: Response::Status(_), .. } => {
                    v7.truncate(v7.len() - 1);
                    assert!(decode(&v7).is_err());
                }
                message if carries_node_entries(&message) => {
                    assert_eq!(decode(&v7), Err(DecodeError::MembershipBeforeWebAccess(7)));
                }
                message => assert_eq!(decode(&v7), Ok(message)),
            }
        }
    }

    /// Version 8 node entries publish no web access: its frames that carry node entries are
    /// refused, saying to upgrade the sender; its other frames read unchanged.
    #[test]
    fn version_8_membership_frames_are_refused_and_its_other_frames_decode() {
        for message in samples() {
            let mut v8 = encode(&message);
            v8[0] = 8;
            if carries_node_entries(&message) {
                assert!(decode(&v8).is_err(), "{message:?}");
            } else {
                assert_eq!(decode(&v8), Ok(message));
            }
        }
        // A join as a version-8 node sends it: its entry ends at the certificate, which a
        // version-9 entry follows with its web access (here, none: two zero bytes).
        let join = Message::Request { id: 5, body: Request::Join { node: NodeInfo::new("a", "b:1", "z", 1).unwrap() } };
        let mut v8 = encode(&join);
        v8[0] = 8;
        assert_eq!(decode(&v8), Err(DecodeError::MembershipBeforeWebAccess(8)));
        v8.truncate(v8.len() - 2);
        assert_eq!(decode(&v8), Err(DecodeError::UnsupportedVersion(8)));
        assert!(alloc::format!("{}", DecodeError::MembershipBeforeWebAccess(8)).contains("upgrade the node"));
    }

    /// A node entry's web access is bounded: an HTTPS address that is not a name, or more
    /// certificate hashes than a rotation needs, do not decode.
    #[test]
    fn web_access_past_its_bounds_does_not_decode() {
        let hash = crate::identity::CertificateDigest::of(b"browser");
        let web = crate::membership::WebAccess::new(Some("127.0.0.1:8101"), alloc::vec![hash; 3]).unwrap();
        let join = |node| Message::Request { id: 5, body: Request::Join { node } };
        let entry = NodeInfo::new("a", "b:1", "z", 1).unwrap().with_web(web.clone());
        let frame = encode(&join(entry.clone()));
        assert_eq!(decode(&frame), Ok(join(entry)));
        // A fourth hash: the count is the byte before the first hash.
        let mut four = frame.clone();
        let at = four.len() - 3 * 32 - 1;
        assert_eq!(four[at], 3);
        four[at] = 4;
        four.extend([7u8; 32]);
        assert_eq!(decode(&four), Err(DecodeError::Malformed));
        // A space in the HTTPS address.
        let mut spaced = frame;
        let colon = spaced.windows(5).position(|w| w == b":8101").unwrap();
        spaced[colon] = b' ';
        assert_eq!(decode(&spaced), Err(DecodeError::Malformed));
        assert!(crate::membership::WebAccess::new(None, alloc::vec![hash; 4]).is_err());
    }

    /// A gossip message with more verdicts than any node sends, or a whole digest out of
    /// order, is refused.
    #[test]
    fn gossip_messages_past_their_bounds_are_refused() {
        let a = NodeId::new("a").unwrap();
        let heartbeat = crate::gossip::Heartbeat { generation: 1, beat: 1 };
        let verdict = crate::gossip::Verdict {
            subject: a.clone(),
            observer: a.clone(),
            at: heartbeat,
            state: crate::liveness::PeerState::Up,
        };
        let mut view = ClusterView::new(4);
        view.upsert_node(NodeInfo::new("a", "h:1", "z", 1).unwrap()).unwrap();
        view.upsert_node(NodeInfo::new("b", "h:2", "z", 1).unwrap()).unwrap();
        let digest = GossipDigest {
            view: ViewWord::Summary(view.digest().summary()),
            heartbeat,
            news: None,
            verdicts: alloc::vec![verdict; MAX_VERDICTS + 1],
        };
        let frame =
            encode(&Message::Request { id: 1, body: Request::Gossip { from: a.clone(), digest: Box::new(digest) } });
        assert_eq!(decode(&frame), Err(DecodeError::Invalid("gossip message carries too many verdicts")));
        let mut whole = view.digest();
        whole.entries.reverse();
        let digest = GossipDigest { view: ViewWord::Whole(whole), heartbeat, news: None, verdicts: Vec::new() };
        let frame = encode(&Message::Request { id: 1, body: Request::Gossip { from: a, digest: Box::new(digest) } });
        assert_eq!(decode(&frame), Err(DecodeError::Invalid("gossip digest entries out of order")));
    }

    #[test]
    fn the_default_frame_limit_is_the_limits_one() {
        assert_eq!(MAX_FRAME, crate::store::Limits::default().max_frame());
    }

    #[test]
    fn bad_frames_get_clear_errors() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[10, 0]), Err(DecodeError::UnsupportedVersion(10)));
        // A store name that is not a valid name.
        let bad_name = [1u8, 0, 7, 0, 3, b'B', b'A', b'D', 1, b'k'];
        assert_eq!(decode(&bad_name), Err(DecodeError::Malformed));
        // A store configuration with R > N.
        let mut frame = encode(&Message::Request {
            id: 1,
            body: Request::CreateStore { name: store(), config: StoreConfig::quorum() },
        });
        let at = frame.len() - 4; // n, r, w, quorum, conflicts: r is 4th from the end
        frame[at] = 9;
        assert_eq!(decode(&frame), Err(DecodeError::Invalid("invalid store configuration")));
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoding_mutated_frames_never_panics(pick in any::<prop::sample::Index>(),
                                               flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let samples = samples();
            let mut bytes = encode(&samples[pick.index(samples.len())]);
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            if let Ok(msg) = decode(&bytes) {
                // Whatever decodes re-encodes to a frame that decodes to the same message.
                prop_assert_eq!(decode(&encode(&msg)), Ok(msg));
            }
        }
    }
}
