//! The node itself, as a sans-IO state machine.
//!
//! A [`Node`] makes every decision a quickv node makes: which requests it accepts and from whom,
//! whether a request was routed with a ring it should refuse, the limits, the replica steps of a
//! get, a mint and a merge (as storage I/O it asks for, one key at a time), coordination of whole
//! requests for callers that cannot route (core's coordinators, held by request), and keeping its
//! cluster view in step with its peers (joining through seeds, exchanging views). It has no
//! sockets, no clock and no global randomness, in the shape of `quinn-proto`'s `Connection`:
//!
//! - **inputs**: [`handle_message`](Node::handle_message) (a decoded frame, or
//!   [`handle_frame`](Node::handle_frame) for raw bytes), [`handle_unreachable`](Node::handle_unreachable)
//!   and [`handle_no_answer`](Node::handle_no_answer) (a request this node sent was not
//!   delivered, or got no answer),
//!   [`handle_io`](Node::handle_io) (a storage step finished), [`handle_timeout`](Node::handle_timeout);
//! - **outputs**, pulled until `None` after every input: [`poll_transmit`](Node::poll_transmit)
//!   (frames to send), [`poll_io`](Node::poll_io) (storage steps to run, in any order: the
//!   machine never has two in flight for one key), [`poll_event`](Node::poll_event) (what an
//!   operator may want to log), and [`poll_timeout`](Node::poll_timeout) (when to call
//!   `handle_timeout` next).
//!
//! `now` is a [`Duration`] since an origin the driver picks, never going backwards. Randomness
//! comes from [`NodeConfig::seed`]. The server runs one of these per process over QUIC and a
//! durable engine; the simulation (`quickv-sim`) runs many over a simulated network and storage,
//! so the code the simulation checks is the code that ships.
//!
//! ```
//! use core::time::Duration;
//! use quickv_core::cluster::ClusterView;
//! use quickv_core::membership::NodeInfo;
//! use quickv_core::node::{Destination, Io, IoOutput, Node, NodeConfig, Origin};
//! use quickv_core::store::StoreName;
//! use quickv_core::version::ContextKey;
//! use quickv_core::wire::{Message, Request, Response};
//!
//! let info = NodeInfo::new("n1", "127.0.0.1:7101", "z1", 1)?;
//! // Every node of a cluster seals contexts with the same secret, made when the cluster was.
//! let secret = ContextKey::new([7; ContextKey::LEN]);
//! let mut node = Node::new(NodeConfig::new(info, secret), ClusterView::new(8), Duration::ZERO)?;
//! while node.poll_io().is_some() {} // the driver would save the view here
//!
//! // A caller asks the node (a replica of every key: it is alone) for a key.
//! let get = Request::Get { store: StoreName::default_store(), key: b"k".to_vec() };
//! node.handle_message(Duration::ZERO, Origin::caller(1), Message::Request { id: 7, body: get });
//! // The node reads its storage first...
//! let (io, step) = node.poll_io().expect("a read");
//! assert!(matches!(step, Io::Load { .. }));
//! node.handle_io(Duration::ZERO, io, Ok(IoOutput::Loaded(None)));
//! // ...then answers on the caller's stream.
//! let out = node.poll_transmit().expect("an answer");
//! assert_eq!(out.to, Destination::Reply(1));
//! assert_eq!(out.message, Message::Response { id: 7, body: Response::State(None) });
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

mod anti_entropy;
mod budget;
mod catalogue;
mod claimant;
mod cluster_sync;
mod coordination;
mod damage;
mod departure;
mod dispatch;
mod handoff;
mod io;
mod pace;
mod refused_mints;
mod replica;
mod shedding;
mod tombstones;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::cluster::{ClusterView, ViewError};
use crate::coordinator::ReplicaFailure;
use crate::gossip::Heartbeat;
use crate::identity::{CertificateDigest, NameError, NodeId};
use crate::liveness::{Liveness, LivenessConfig, PeerState, StatusReport};
use crate::membership::{IdTaken, NodeInfo, NodeStatus};
use crate::store::{Limits, StoreConfig, StoreName};
use crate::version::{ContextKey, WriteId};
use crate::wire::{self, ErrorKind, ErrorReply, Message, Request, Response};

pub use handoff::Hint;
use io::IoOwner;
pub use io::{Io, IoError, IoId, IoOutput};

use coordination::Coordination;
use replica::KeyQueue;

/// How a node runs. [`NodeConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's own entry (id, address, zone, capacity).
    pub info: NodeInfo,
    /// Addresses of nodes to join through; empty for the first node of a cluster.
    pub seeds: Vec<String>,
    /// Key and value limits (and so the frame limit).
    pub limits: Limits,
    /// How long a replica has to answer when this node coordinates (default 2 s).
    pub replica_timeout: Duration,
    /// How often the node runs a gossip round (and raises its heartbeat), and retries joining
    /// (default 1 s). Peers are suspected after a few intervals of silence.
    pub sync_interval: Duration,
    /// How many peers each node watches (default 3): it gossips with each every round, judges
    /// them by its own detector and spreads its verdicts on them (see [`crate::gossip`]). More
    /// watchers make a wrong verdict less likely and cost each node a round trip a round each.
    pub watch_count: usize,
    /// How many fallbacks a sloppy store may use when this node coordinates (default 3).
    pub fallbacks: usize,
    /// The most hinted writes kept for one target (default 100,000); past it the record is
    /// kept without a hint and the overflow counted (see [`handoff`]).
    pub max_hints: usize,
    /// The most bytes of records kept as hints for one target (default 256 MiB: each hinted
    /// record counts its key and versions); past it, as past `max_hints` (see [`handoff`]).
    pub max_hint_bytes: u64,
    /// How long a hint is kept (default 3 hours); older ones are dropped and counted.
    pub max_hint_age: Duration,
    /// The most hinted writes in flight to one target at once (default 4): the replay's
    /// throttle (each acknowledgement starts the next).
    pub hint_batch: usize,
    /// Bytes a second the replay of hints may send (default 1 MiB, as anti-entropy's budget),
    /// across its targets: with `hint_batch`, the replay's throttle (see [`handoff`]).
    pub hint_budget: u64,
    /// The share of `hint_budget` and `anti_entropy_budget`, in percent, that background work
    /// earns while the node is busy serving requests (100 gets or mints a second or more; a
    /// larger share under a lighter load); 100 never yields. Default 6 (see [`pace`]).
    pub busy_background_percent: u8,
    /// Seed of the node's random choices (which peer to exchange views with, write ids).
    pub seed: u64,
    /// The node's incarnation (default 1): the driver persists it and starts a new one whenever
    /// the node may have lost state (a start not preceded by a clean shutdown, any start of a
    /// node without durable storage). The node mints its writes as `id#incarnation`, so it never
    /// mints a dot it may have minted before, and a state a crash took back (or that a read
    /// exposed before it was synced) can never be confused with a later write.
    pub incarnation: u64,
    /// Whether this start follows a stop that may have lost writes the node minted (default
    /// false): any stop that was not clean (a node releases the mints of puts it coordinates to
    /// the other replicas before its own store finishes, see `Node::release_mint`; and a node
    /// under `--sync os` acknowledges before syncing), or any restart of a node on the memory
    /// engine. Its mint log may then lack writes it minted before, so a
    /// [resent](crate::version::Write::resent) write it has no record of, stamped before this
    /// start (plus `max_clock_skew`), is answered `Indeterminate`, never minted a second time.
    pub lost_records: bool,
    /// The wall-clock time, in milliseconds since the Unix epoch, at `now` = 0 (default 0): the
    /// node's clock for last-writer-wins timestamps is this plus `now`.
    pub wall_clock_origin_ms: u64,
    /// How far ahead of the node's clock a last-writer-wins timestamp may be (default 60 s);
    /// a write stamped further ahead is refused.
    pub max_clock_skew: Duration,
    /// The most stores the catalogue takes (default 1,000): the catalogue is in every view, saved
    /// and sent on every change, so it is kept small. (Concurrent creates at several nodes can
    /// pass it by as many.)
    pub max_stores: usize,
    /// The cluster secret contexts are sealed with: every node of the cluster has the same one
    /// (see [`ContextKey`]).
    pub context_key: ContextKey,
    /// The settings of the `default` store a node founding a cluster creates (default the
    /// `quorum` preset; `None`: no default store). Nodes that join learn the catalogue instead.
    pub default_store: Option<StoreConfig>,
    /// How often, about, the node compares its Merkle trees of one store with a peer (default
    /// 1 s, jittered; zero switches anti-entropy off). See [`anti_entropy`].
    pub anti_entropy_interval: Duration,
    /// The bytes per second anti-entropy may send, receive and read (default 1 MiB/s).
    pub anti_entropy_budget: u64,
    /// How long a deleted key's tombstone must be held unchanged by every node that may hold
    /// a copy of the key, twice over, before it is collected (default 10 minutes; zero: never
    /// collected). It must be longer than any message can stay in flight, a paused node's
    /// included. See [`tombstones`].
    pub tombstone_grace: Duration,
    /// The highest counter this node's actor had minted for any key whose record it removed
    /// (collected tombstones, dropped fallback copies), as the driver saved it from
    /// [`Io::Remove`] in this incarnation (default 0; a new incarnation starts again from 0, its
    /// actor being new). Every dot the node mints is above it.
    pub counter_floor: u64,
    /// How often the node reads all its records to find damaged ones before a request does
    /// (default 1 day; zero: never). See [`damage`].
    pub scrub_interval: Duration,
    /// Whether this node, when it is the claimant, moves the ring as soon as the membership
    /// asks for it (`true`, the default: joins through seeds apply themselves) or only when an
    /// operator commits the plan (`quickv cluster commit`, [`Request::CommitRing`]). Set it
    /// alike on every node: any of them may become the claimant.
    pub automatic_ring_changes: bool,
    /// Whether a node that gains partitions in a ring change receives them (compares with
    /// their current replicas) before it counts as having them (`true`, the default). Switched
    /// off only by the simulation, to show that its checkers see the acknowledged writes a ring
    /// change loses without transfers; `quickv-node` has no setting for it.
    pub receive_partitions: bool,
}

impl NodeConfig {
    /// The default of [`busy_background_percent`](Self::busy_background_percent).
    pub const DEFAULT_BUSY_BACKGROUND_PERCENT: u8 = 6;

    /// A configuration with the defaults for a node with this entry, sealing contexts with the
    /// cluster's `context_key`.
    pub fn new(info: NodeInfo, context_key: ContextKey) -> NodeConfig {
        NodeConfig {
            info,
            context_key,
            default_store: Some(StoreConfig::quorum()),
            seeds: Vec::new(),
            limits: Limits::default(),
            replica_timeout: Duration::from_secs(2),
            sync_interval: Duration::from_secs(1),
            watch_count: 3,
            fallbacks: 3,
            max_hints: 100_000,
            max_hint_bytes: 256 * 1024 * 1024,
            max_hint_age: Duration::from_secs(3 * 3600),
            hint_batch: 4,
            hint_budget: 1024 * 1024,
            busy_background_percent: NodeConfig::DEFAULT_BUSY_BACKGROUND_PERCENT,
            seed: 0,
            incarnation: 1,
            lost_records: false,
            wall_clock_origin_ms: 0,
            max_clock_skew: Duration::from_secs(60),
            max_stores: 1000,
            anti_entropy_interval: Duration::from_secs(1),
            anti_entropy_budget: 1024 * 1024,
            tombstone_grace: Duration::from_secs(600),
            counter_floor: 0,
            scrub_interval: Duration::from_secs(24 * 3600),
            automatic_ring_changes: true,
            receive_partitions: true,
        }
    }
}

/// Who sent a message in, as the transport established it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A request arriving on a stream the driver named `stream`; the answer goes to
    /// [`Destination::Reply`] with the same number.
    Stream {
        /// The driver's name for the stream, unique among streams open at once.
        stream: u64,
        /// The digest of the certificate of the cluster's CA the sender presented (a node of
        /// the cluster), or `None` for a caller without one.
        peer: Option<CertificateDigest>,
    },
    /// The answer to a request this node sent (matched by its id).
    Answer,
}

impl Origin {
    /// A request on `stream` from a caller without a node certificate.
    pub fn caller(stream: u64) -> Origin {
        Origin::Stream { stream, peer: None }
    }

    /// A request on `stream` from a node of the cluster presenting `certificate`.
    pub fn peer(stream: u64, certificate: CertificateDigest) -> Origin {
        Origin::Stream { stream, peer: Some(certificate) }
    }
}

/// Where a frame goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The answer to the request that came in on this stream: write it and finish the stream.
    Reply(u64),
    /// A request to the node at this address (a node of the view or a seed): open a stream, send
    /// it, and feed the answer back with [`Origin::Answer`]; if there is none, report
    /// [`Node::handle_unreachable`] (never delivered) or [`Node::handle_no_answer`] (sent, but
    /// nothing came back) with the request's id.
    Node {
        /// Where the node listens.
        address: String,
        /// Its id, when known (not for seeds).
        id: Option<NodeId>,
    },
}

/// A frame for the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where.
    pub to: Destination,
    /// What.
    pub message: Message,
}

/// Something the node did that an operator may want to see (the driver logs these).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The cluster view changed (membership, ring or store catalogue).
    ViewChanged,
    /// The node joined the cluster through this seed.
    Joined {
        /// The seed's address.
        seed: String,
    },
    /// A node that asked to join claims an id held by a node with another certificate, or a
    /// peer's view holds such an entry: it was refused and the view is unchanged.
    IdConflict {
        /// The refused claim.
        taken: IdTaken,
    },
    /// This node's join was refused for good: its id belongs to another node. It stops trying;
    /// the operator must start it from that node's folder or give it another id.
    JoinRefused {
        /// The seed that refused.
        seed: String,
        /// Why (names the id, both addresses and both certificates).
        reason: String,
    },
    /// A read this node coordinated found `replica` behind the reconciled state of the key and
    /// is bringing it up to date (read repair).
    ReadRepair {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// The stale replica (this node itself, or a peer).
        replica: NodeId,
    },
    /// A request this node coordinates failed after a replica answered `StaleRing`, and runs
    /// again now that this node caught up with the newer ring (see `node::coordination`); a
    /// put goes to `minter` only, when one may have applied it.
    CoordinationRerun {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// The replica asked to apply the write again, if one may have applied it.
        minter: Option<NodeId>,
    },
    /// This node's verdict on a peer changed (see [`crate::liveness`]).
    PeerState {
        /// The peer.
        peer: NodeId,
        /// Its state before.
        from: PeerState,
        /// Its state now.
        to: PeerState,
    },
    /// A hinted write was handed back to its primary, which acknowledged it.
    HintDelivered {
        /// The primary.
        target: NodeId,
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
    },
    /// An anti-entropy exchange with `peer` moved keys of `store` (see [`anti_entropy`]).
    AntiEntropy {
        /// The peer compared with.
        peer: NodeId,
        /// The store.
        store: StoreName,
        /// Keys whose state this node took from the peer.
        pulled: u64,
        /// Keys whose state this node sent to the peer.
        pushed: u64,
    },
    /// A record of this node's storage failed its checks. Reads of the key fail here (other
    /// replicas answer), the next replica write (anti-entropy, a read repair, a handoff)
    /// replaces it, and this node mints no write of the key until it restarts: the record may
    /// have held dots it minted, so minting the key again needs a new incarnation. The driver
    /// reports it and makes the next start a new incarnation.
    DamagedRecord {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// What storage said.
        reason: String,
    },
    /// Storage could not read a range of a store's records at all (a damaged block of a table
    /// file: which keys it held is unknown). The node's Merkle leaves over the range are
    /// disturbed, so anti-entropy compares them with every peer and brings the peers' copies
    /// in; a read of a key there finds its record damaged ([`Event::DamagedRecord`]) and is
    /// served by the other replicas. Like a damaged record, it makes the next start a new
    /// incarnation.
    DamagedRange {
        /// The store.
        store: StoreName,
        /// The tokens whose records could not be read.
        range: crate::token::TokenRange,
    },
    /// This node removed its record of a deleted key: every node of the key held the tombstone
    /// (see [`tombstones`]).
    TombstoneCollected {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
    },
    /// This node, the claimant, moved the ring to the membership (see
    /// [`ClusterView::claimant`]).
    RingMoved {
        /// The new ring's epoch.
        epoch: u64,
        /// Its members.
        nodes: usize,
        /// Whether a transition to it started (data moves to its gainers before it is
        /// committed), rather than the ring being committed.
        under_way: bool,
    },
    /// This node, the claimant, could not make the ring the membership asks for (more members
    /// than partitions).
    RingRefused {
        /// Why.
        reason: String,
    },
    /// A peer's view could not be merged (another cluster, or inconsistent).
    IncompatiblePeer {
        /// The peer's address.
        address: String,
        /// Why.
        reason: String,
    },
    /// This node, a gainer of a ring change, has received part of its partitions (reported at
    /// most every 10 s while it receives, and once when it is done).
    Receiving {
        /// Its progress.
        progress: crate::liveness::TransferReport,
        /// Whether it has received every partition it gains.
        done: bool,
    },
    /// This node has left the cluster: its leave is complete (it handed every partition to
    /// the new owners), or it was removed. It takes part in nothing any more and may be
    /// stopped; its saved view keeps it from starting again under the same id (see
    /// `node::departure`).
    Left,
    /// A storage step failed.
    StorageFailed {
        /// Why.
        reason: String,
    },
}

/// Request counters, for operators and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Replica requests (get, mint, replicate) received from callers and peers.
    pub replica_requests: u64,
    /// Replica requests for a key this node is not a primary replica of in its ring.
    pub misrouted: u64,
    /// Replica requests routed with another ring than this node's, answered `StaleRing`.
    pub stale_routed: u64,
    /// Requests this node coordinated for plain callers.
    pub coordinated: u64,
    /// Coordinations run again with a newer ring after a replica answered `StaleRing` (see
    /// `node::coordination`).
    pub coordinations_rerun: u64,
    /// Replica requests this node sent to other nodes while coordinating.
    pub forwarded: u64,
    /// Mints of puts this node coordinated whose state went to the other replicas while its own
    /// store was under way (see `Node::release_mint`).
    pub mints_released: u64,
    /// Requests refused as malformed, over a limit, or with an invalid context.
    pub refused: u64,
    /// Hinted writes handed back to their primaries.
    pub hints_delivered: u64,
    /// Hinted writes not kept as hints (past `max_hints` or `max_hint_bytes` for their target,
    /// or `max_hint_age`):
    /// anti-entropy brings their keys level.
    pub hints_dropped: u64,
    /// Anti-entropy exchanges this node started.
    pub anti_entropy_exchanges: u64,
    /// Keys anti-entropy took from peers.
    pub anti_entropy_pulled: u64,
    /// Keys anti-entropy sent to peers.
    pub anti_entropy_pushed: u64,
    /// Bytes of digests, keys and states anti-entropy sent, received and read from storage (as
    /// counted against its budget).
    pub anti_entropy_bytes: u64,
    /// Tombstones this node removed from its storage once every node of the key held them
    /// (see [`tombstones`]).
    pub tombstones_collected: u64,
    /// Copies of keys this node held as a fallback and dropped once their primary acknowledged
    /// the handoff (see [`handoff`]).
    pub copies_dropped: u64,
    /// Records of keys this node lost in a ring change that it set out to remove (see
    /// `node::shedding`).
    pub records_shed: u64,
    /// Records found damaged (see [`Event::DamagedRecord`]).
    pub damaged_records: u64,
    /// Damaged records replaced by a replica write.
    pub damaged_repaired: u64,
    /// Ranges of records storage could not read at all (see [`Event::DamagedRange`]).
    pub damaged_ranges: u64,
}

/// Why this node sent a request, so that its answer goes to the right place.
#[derive(Clone, Debug)]
enum Purpose {
    /// A replica request of a coordination.
    Replica { coordination: u64, to: NodeId, call: ReplicaCall },
    /// A read repair or other write nobody waits for.
    Repair,
    /// A join through a seed.
    Join { seed: String },
    /// A gossip round with a peer.
    Gossip { peer: NodeId },
    /// What a peer lacked after a gossip round.
    Push { peer: NodeId },
    /// A hinted write handed back to its primary (`target`), or to `to`, a replica of the key
    /// that took over from it: the state sent.
    Handoff { target: NodeId, to: NodeId, key: (StoreName, Vec<u8>), generation: u64, sent: crate::version::Siblings },
    /// An anti-entropy request (see [`anti_entropy`]).
    AntiEntropy { peer: NodeId, call: anti_entropy::Call },
    /// A read of a key this node found damaged, from another replica (see [`damage`]).
    Rebuild { key: (StoreName, Vec<u8>), from: NodeId },
    /// A tombstone check or collect of round `round` (see [`tombstones`]).
    Tombstone { round: u64, peer: NodeId },
    /// A store create sent on to the claimant for a caller waiting on `stream`.
    Create { stream: u64, id: u64, name: StoreName, config: crate::store::StoreConfig },
}

/// The replica request a coordination sent, to interpret the answer.
#[derive(Clone, Debug)]
enum ReplicaCall {
    Read,
    Write(crate::coordinator::PutRequest),
}

#[derive(Clone, Debug)]
struct Outgoing {
    purpose: Purpose,
    /// When the request is given up if no answer came (the transport may stay silent).
    expires: Duration,
}

/// A reply that waits until the view it depends on is saved.
#[derive(Clone, Debug)]
struct AfterSave {
    stream: u64,
    id: u64,
    body: Response,
}

/// Why a node machine could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The saved view cannot take this node's entry (see [`Node::new`]).
    #[error(transparent)]
    View(#[from] ViewError),
    /// The node's id cannot name its writes with an incarnation (see
    /// [`NodeId::in_incarnation`]).
    #[error("node id {0} cannot name its writes: {1}")]
    Id(NodeId, NameError),
    /// The saved view says this node left the cluster, or was removed: it does not start
    /// again under the same id (issue 9, 2.3).
    #[error(
        "node {0} has left the cluster (or was removed from it): it does not start again under this id; to join again, start it with a new data folder and a new id"
    )]
    Left(NodeId),
}

/// A quickv node as a state machine: see the [module docs](self).
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    id: NodeId,
    /// The actor of the writes this node mints: `id#incarnation`.
    actor: NodeId,
    view: ClusterView,
    rng: u64,
    stats: NodeStats,
    next_request: u64,
    next_io: u64,
    next_coordination: u64,
    transmits: VecDeque<Transmit>,
    ios: VecDeque<(IoId, Io)>,
    events: VecDeque<Event>,
    /// Requests this node sent that await an answer.
    outgoing: BTreeMap<u64, Outgoing>,
    /// Replica steps, one queue per key; the head of a queue has its storage step in flight.
    keys: BTreeMap<(StoreName, Vec<u8>), KeyQueue>,
    /// Which key each storage step in flight is for (`None`: a view save).
    io_owner: BTreeMap<IoId, IoOwner>,
    /// The hints this node holds (see [`handoff`]).
    hints: handoff::Hints,
    /// The handoffs in flight, by target.
    handoffs: handoff::InFlight,
    /// The bytes of the records held as hints, by target.
    hint_bytes: handoff::HintBytes,
    /// What the replay of hints may still send this second.
    hint_replay: budget::Budget,
    /// Replies held until a view save finishes, by the save's id.
    after_save: BTreeMap<IoId, Vec<AfterSave>>,
    /// Dropped stores whose data this node has asked storage to delete since it started.
    purged: alloc::collections::BTreeSet<StoreName>,
    coordinations: BTreeMap<u64, Coordination>,
    joined: bool,
    /// The committed ring this node last scanned its storage for (see `Node::ring_committed`).
    scanned_ring: Option<crate::ring::RingVersion>,
    /// Whether [`Event::Left`] was reported.
    left_reported: bool,
    /// Why a seed refused this node's join for good (its id is taken), if one did.
    join_refused: Option<String>,
    /// The node's wall clock when this machine started (ms since the Unix epoch).
    started_ms: u64,
    next_sync: Duration,
    /// This node's heartbeat, raised every gossip round.
    heartbeat: Heartbeat,
    /// The verdict on each peer.
    liveness: Liveness,
    /// The view's digest and summary, made again on every change of the view.
    /// Shared with the news base while no change has come since (see `cluster_sync`).
    digest: alloc::sync::Arc<crate::gossip::ViewDigest>,
    summary: crate::gossip::ViewSummary,
    /// Gossip's news and verdicts in spread, and the peers this node watches (see
    /// [`cluster_sync`]).
    spread: cluster_sync::Spread,
    /// Merkle trees and exchanges (see [`anti_entropy`]).
    anti_entropy: anti_entropy::AntiEntropy,
    /// The tombstones this node collects (see [`tombstones`]).
    tombstones: tombstones::Collector,
    /// Every dot this node mints is above this counter (see [`NodeConfig::counter_floor`]).
    counter_floor: u64,
    /// Damaged records found, and the scrub (see [`damage`]).
    damage: damage::Damage,
    /// Mints answered with an error, so that a copy of one gets the same answer (see
    /// [`refused_mints`]).
    refused_mints: refused_mints::RefusedMints,
    /// The foreground requests the node takes (see [`pace`]).
    load: pace::Load,
    /// The bytes storage holds, as the driver last said ([`Node::note_stored_bytes`]).
    stored_bytes: Option<u64>,
    /// The number the next replica step takes.
    next_step: u64,
    /// The ring change this node last learnt of, and the number of the first replica step it
    /// took after: the writes taken before may have been routed with the previous ring, and a
    /// comparison waits for them to be stored (see `anti_entropy::comparable`).
    transition_barrier: Option<(crate::ring::RingVersion, u64)>,
}

impl Node {
    /// A node with its `config` and the cluster view it saved last time (or a new view), at
    /// `now`. The node adds its own entry to the view (raising its version if the address,
    /// zone or capacity changed since the saved one) and asks for the view to be saved.
    ///
    /// Fails, changing nothing, if the saved view's ring cannot take this node's entry: the view
    /// (and its store catalogue) is never thrown away silently.
    pub fn new(config: NodeConfig, mut view: ClusterView, now: Duration) -> Result<Node, NodeError> {
        let mut info = config.info.clone();
        let actor = info.id.in_incarnation(config.incarnation).map_err(|e| NodeError::Id(info.id.clone(), e))?;
        if let Some(known) = view.membership().node(&info.id) {
            match known.status {
                NodeStatus::Removed => return Err(NodeError::Left(info.id.clone())),
                // A restart does not end a leave.
                NodeStatus::Leaving => info.status = NodeStatus::Leaving,
                NodeStatus::Joining | NodeStatus::Up => {}
            }
            let same = known.address == info.address
                && known.zone == info.zone
                && known.capacity == info.capacity
                && known.certificate == info.certificate
                && known.web == info.web;
            info.version = if same { known.version.max(info.version) } else { known.version.saturating_add(1) };
        }
        // A node with no seeds and a view without members founds the cluster: it creates the
        // default store, the one catalogue entry no claimant decides.
        let founding = config.seeds.is_empty() && view.membership().nodes().next().is_none();
        view.upsert_node(info.clone())?;
        if config.seeds.is_empty() {
            // A node without seeds is in (it founded the cluster, or restarts in it): if it is
            // the claimant, the ring takes its entry now.
            view.advance_ring(&info.id)?;
        }
        if let (true, Some(settings)) = (founding, config.default_store) {
            let _ = view.create_store(StoreName::default_store(), settings);
        }
        let started_ms = config.wall_clock_origin_ms.saturating_add(now.as_millis() as u64);
        let partition_bits = view.partition_bits();
        let digest = alloc::sync::Arc::new(view.digest());
        let mut node = Node {
            heartbeat: Heartbeat { generation: started_ms, beat: 0 },
            liveness: Liveness::new(LivenessConfig::for_interval(config.sync_interval)),
            summary: digest.summary(),
            digest,
            spread: cluster_sync::Spread::default(),
            id: info.id.clone(),
            actor,
            rng: crate::mix::mix64(config.seed),
            joined: config.seeds.is_empty(),
            // The scan that builds the trees at start covers the ring the view holds.
            scanned_ring: view.ring().map(crate::ring::Ring::version),
            left_reported: false,
            join_refused: None,
            started_ms,
            config: NodeConfig { info, ..config },
            view,
            stats: NodeStats::default(),
            next_request: 1,
            next_io: 1,
            next_coordination: 1,
            transmits: VecDeque::new(),
            ios: VecDeque::new(),
            events: VecDeque::new(),
            outgoing: BTreeMap::new(),
            keys: BTreeMap::new(),
            io_owner: BTreeMap::new(),
            hints: BTreeMap::new(),
            handoffs: BTreeMap::new(),
            hint_bytes: BTreeMap::new(),
            hint_replay: budget::Budget::new(config.hint_budget, now),
            after_save: BTreeMap::new(),
            coordinations: BTreeMap::new(),
            purged: alloc::collections::BTreeSet::new(),
            next_sync: now,
            anti_entropy: anti_entropy::AntiEntropy::new(partition_bits, config.anti_entropy_budget, now),
            tombstones: tombstones::Collector::default(),
            counter_floor: config.counter_floor,
            damage: damage::Damage::new(now, config.scrub_interval),
            refused_mints: refused_mints::RefusedMints::default(),
            load: pace::Load::default(),
            stored_bytes: None,
            next_step: 0,
            transition_barrier: None,
        };
        node.save_view();
        node.issue_io(Io::LoadHints, IoOwner::Hints);
        node.build_trees();
        node.purge_dropped();
        node.handle_timeout(now);
        Ok(node)
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The actor that names the writes this node mints (`id#incarnation`).
    pub fn actor(&self) -> &NodeId {
        &self.actor
    }

    /// Publishes how JavaScript callers reach this node now (a rotated browser certificate, for
    /// one): raises the node's entry, saves the view and tells every peer. Returns whether the
    /// entry changed.
    pub fn set_web_access(&mut self, now: Duration, web: crate::membership::WebAccess) -> bool {
        let changed = self.change_own_entry(|entry| core::mem::replace(&mut entry.web, web.clone()) != web);
        if changed {
            self.view_changed(now);
        }
        changed
    }

    /// Applies `change` to this node's own entry; if it changed anything (returns true), raises
    /// the entry's version and puts it in the view. Returns whether the view changed.
    pub(crate) fn change_own_entry(&mut self, change: impl FnOnce(&mut NodeInfo) -> bool) -> bool {
        let Some(mut entry) = self.view.membership().node(&self.id).cloned() else { return false };
        if !change(&mut entry) {
            return false;
        }
        entry.version = entry.version.saturating_add(1);
        self.config.info = entry.clone();
        self.view.upsert_node(entry).unwrap_or(false)
    }

    /// The node's entry as it announces it.
    pub fn info(&self) -> &NodeInfo {
        &self.config.info
    }

    /// The node's cluster view.
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// This node's verdict on `peer` (see [`crate::liveness`]).
    pub fn peer_state(&self, peer: &NodeId) -> PeerState {
        self.liveness.state(peer)
    }

    /// What this node sees at `now`: its view and its verdict on each peer (`quickv status`).
    pub fn status(&self, now: Duration) -> StatusReport {
        let peers = self.peers().iter().map(|peer| self.liveness.report(now, peer, self.hints_for(peer))).collect();
        let damage = crate::liveness::DamageReport {
            records: self.stats.damaged_records,
            repaired: self.stats.damaged_repaired,
            ranges: self.stats.damaged_ranges,
        };
        StatusReport {
            node: self.id.clone(),
            view: self.view.clone(),
            peers,
            damage,
            stored_bytes: self.stored_bytes,
            transfer: self.transfer_report(now),
        }
    }

    /// Takes the bytes the node's storage holds, as the driver measures them now and then
    /// (reported by [`status`](Self::status); `quickv cluster plan` estimates what a ring change
    /// moves from them).
    pub fn note_stored_bytes(&mut self, bytes: u64) {
        self.stored_bytes = Some(bytes);
    }

    /// The node's request counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// The largest frame the node reads; a longer one is refused with
    /// [`handle_oversized`](Self::handle_oversized) instead of being read.
    pub fn max_frame(&self) -> usize {
        self.config.limits.max_frame()
    }

    /// Whether the node has joined a cluster (always true for a node without seeds).
    pub fn has_joined(&self) -> bool {
        self.joined
    }

    /// Why a seed refused this node's join for good (its id belongs to a node with another
    /// certificate), if one did: the node no longer tries to join.
    pub fn join_refused(&self) -> Option<&str> {
        self.join_refused.as_deref()
    }

    /// Feeds one frame's bytes. A frame that does not decode is answered with a
    /// [`ErrorKind::Malformed`] error on its stream (answers to this node's own requests that do
    /// not decode count as no answer).
    pub fn handle_frame(&mut self, now: Duration, from: Origin, frame: &[u8]) {
        match (wire::decode(frame), from) {
            (Ok(message), _) => self.handle_message(now, from, message),
            (Err(e), Origin::Stream { stream, .. }) => {
                self.stats.refused += 1;
                self.reply(stream, 0, Response::Error(ErrorReply::new(ErrorKind::Malformed, alloc::format!("{e}"))));
            }
            (Err(_), Origin::Answer) => {}
        }
    }

    /// Refuses a request whose frame is over [`max_frame`](Self::max_frame) without reading it.
    pub fn handle_oversized(&mut self, _now: Duration, stream: u64) {
        self.stats.refused += 1;
        let message = alloc::format!(
            "request is larger than the frame limit of {} bytes (max_value + max_key + envelope)",
            self.max_frame()
        );
        self.reply(stream, 0, Response::Error(ErrorReply::new(ErrorKind::TooLarge, message)));
    }

    /// Feeds one decoded message: a request from a caller or peer, or the answer to a request
    /// this node sent.
    pub fn handle_message(&mut self, now: Duration, from: Origin, message: Message) {
        match (message, from) {
            (Message::Request { id, body }, Origin::Stream { stream, peer }) => {
                self.handle_request(now, stream, peer, id, None, body)
            }
            (Message::Routed { id, ring, body }, Origin::Stream { stream, peer }) => {
                self.handle_request(now, stream, peer, id, Some(ring), body)
            }
            (Message::Response { id, body }, Origin::Answer) => self.handle_answer(now, id, Ok(body)),
            // A response on a request stream, or a request where an answer was expected.
            (_, Origin::Stream { stream, .. }) => {
                self.stats.refused += 1;
                self.reply(stream, 0, Response::Error(ErrorReply::new(ErrorKind::Malformed, "expected a request")));
            }
            (_, Origin::Answer) => {}
        }
    }

    /// The transport could not deliver request `id` (no connection could be made to the node):
    /// the node did not act on it.
    pub fn handle_unreachable(&mut self, now: Duration, id: u64) {
        self.handle_answer(now, id, Err(ReplicaFailure::Unavailable));
    }

    /// Request `id` went out but no answer came back (the connection was lost, the transport
    /// timed out, the answer did not decode): the node may have acted on it.
    pub fn handle_no_answer(&mut self, now: Duration, id: u64) {
        self.handle_answer(now, id, Err(ReplicaFailure::NoAnswer));
    }

    /// A storage step finished.
    pub fn handle_io(&mut self, now: Duration, id: IoId, result: Result<IoOutput, IoError>) {
        let Some(owner) = self.io_owner.remove(&id) else { return };
        if let Err(IoError(reason)) = &result {
            self.events.push_back(Event::StorageFailed { reason: reason.clone() });
        }
        match owner {
            IoOwner::Key(store, key) => self.replica_io_done(now, (store, key), result),
            IoOwner::View => {
                let failed = result.is_err();
                for held in self.after_save.remove(&id).unwrap_or_default() {
                    let body = if failed {
                        Response::Error(ErrorReply::new(ErrorKind::Internal, "the cluster view could not be saved"))
                    } else {
                        held.body
                    };
                    self.reply(held.stream, held.id, body);
                }
            }
            IoOwner::Hints => {
                if let Ok(IoOutput::Hints(hints)) = result {
                    for hint in hints {
                        self.hint_stored(hint);
                    }
                }
            }
            IoOwner::Scan(number) => self.scan_page(now, number, result),
            IoOwner::Checkpoint => self.checkpoint_done(),
            IoOwner::Nobody => {}
        }
    }

    /// Time has come (see [`poll_timeout`](Self::poll_timeout)): expires replica requests,
    /// gives up on silent peers, exchanges views and retries joining when due.
    pub fn handle_timeout(&mut self, now: Duration) {
        let expired: Vec<u64> = self.outgoing.iter().filter(|(_, o)| o.expires <= now).map(|(&id, _)| id).collect();
        for id in expired {
            self.handle_answer(now, id, Err(ReplicaFailure::NoAnswer));
        }
        self.coordinations_timeout(now);
        self.pace_background(now);
        self.anti_entropy_tick(now);
        self.tombstones_tick(now);
        self.scrub_tick(now);
        if now >= self.next_sync {
            self.next_sync = now.saturating_add(self.config.sync_interval);
            self.sync_tick(now);
        }
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next storage step to run; report its result with [`handle_io`](Self::handle_io).
    pub fn poll_io(&mut self) -> Option<(IoId, Io)> {
        self.ios.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let outgoing = self.outgoing.values().map(|o| o.expires).min();
        let coordination = self.coordinations.values().filter_map(Coordination::poll_timeout).min();
        let anti_entropy = self.anti_entropy.poll_timeout(!self.config.anti_entropy_interval.is_zero());
        let tombstones = self.tombstones_timeout();
        let scrub = self.damage.poll_timeout();
        [Some(self.next_sync), outgoing, coordination, anti_entropy, tombstones, scrub].into_iter().flatten().min()
    }

    /// Sends a request to a node and remembers why.
    fn send_request(&mut self, now: Duration, to: Destination, body: Request, routed: bool, purpose: Purpose) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        let message = match self.view.routing_version() {
            Some(ring) if routed => Message::Routed { id, ring, body },
            _ => Message::Request { id, body },
        };
        // The transport's own timeouts are longer; past this the answer is of no use.
        let expires = now.saturating_add(self.config.replica_timeout.saturating_mul(2));
        self.outgoing.insert(id, Outgoing { purpose, expires });
        self.transmits.push_back(Transmit { to, message });
        id
    }

    /// The destination of a node of the view.
    fn destination(&self, id: &NodeId) -> Option<Destination> {
        let info = self.view.membership().node(id)?;
        Some(Destination::Node { address: info.address.clone(), id: Some(id.clone()) })
    }

    fn reply(&mut self, stream: u64, id: u64, body: Response) {
        self.transmits.push_back(Transmit { to: Destination::Reply(stream), message: Message::Response { id, body } });
    }

    fn issue_io(&mut self, io: Io, owner: IoOwner) -> IoId {
        let id = IoId(self.next_io);
        self.next_io += 1;
        self.io_owner.insert(id, owner);
        self.ios.push_back((id, io));
        id
    }

    /// Asks for the current view to be saved; returns the step's id.
    fn save_view(&mut self) -> IoId {
        // Every change of the view is saved: the digest is made again, and what changed is news.
        self.view_digested();
        self.issue_io(Io::SaveView(self.view.clone()), IoOwner::View)
    }

    /// The node's wall clock at `now`, in milliseconds since the Unix epoch.
    fn wall_clock_ms(&self, now: Duration) -> u64 {
        self.config.wall_clock_origin_ms.saturating_add(now.as_millis() as u64)
    }

    /// A fresh write id from the node's generator.
    fn new_write_id(&mut self) -> WriteId {
        let id = (u128::from(self.random()) << 64) | u128::from(self.random());
        if id == 0 { WriteId(1) } else { WriteId(id) }
    }

    /// A random number from the node's seeded generator (SplitMix64).
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        crate::mix::mix64(self.rng)
    }

    /// Request traffic feeds the verdict on a peer: an answer shows it alive, a failure
    /// marks it (see [`crate::liveness`]).
    fn heard(&mut self, now: Duration, peer: &NodeId, answer: &Result<Response, ReplicaFailure>) {
        if *peer == self.id {
            return;
        }
        match answer {
            Ok(_) => self.liveness.handle_answer(now, peer),
            Err(failure) => self.liveness.handle_failure(now, peer, *failure == ReplicaFailure::Unavailable),
        }
        self.update_liveness(now);
    }

    fn handle_answer(&mut self, now: Duration, id: u64, answer: Result<Response, ReplicaFailure>) {
        let Some(outgoing) = self.outgoing.remove(&id) else { return };
        match outgoing.purpose {
            Purpose::Replica { coordination, to, call } => {
                self.heard(now, &to, &answer);
                self.replica_answer(now, coordination, &to, &call, answer)
            }
            Purpose::Repair => {}
            Purpose::Join { seed } => self.join_answer(now, seed, answer),
            Purpose::Gossip { peer } => self.gossip_answer(now, peer, answer),
            // Only a push's arrival matters.
            Purpose::Push { peer } => self.heard(now, &peer, &answer),
            Purpose::Handoff { target, to, key, generation, sent } => {
                self.heard(now, &to, &answer);
                self.handoff_answer(now, target, key, generation, sent, answer)
            }
            Purpose::Create { stream, id, name, config } => self.claimant_answer(now, stream, id, name, config, answer),
            Purpose::AntiEntropy { peer, call } => self.anti_entropy_answer(now, peer, call, answer),
            Purpose::Tombstone { round, peer } => self.tombstone_answer(now, round, peer, answer),
            Purpose::Rebuild { key, from } => self.rebuild_answer(now, key, from, answer),
        }
    }
}

#[cfg(test)]
mod tests;
