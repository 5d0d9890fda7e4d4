//! # quickv-core: the sans-IO brain of quickv
//!
//! Everything that decides *what* a quickv node or smart client should do lives here, with no
//! sockets, no clock reads and no global randomness: time comes in as a `now` argument (a
//! [`Duration`](core::time::Duration) since an origin the caller picks) and randomness from seeds.
//! The crate is `#![no_std]` + `alloc`, so it builds for `wasm32-unknown-unknown` and runs the
//! same in the server, the Rust client and the browser.
//!
//! ## A tour
//!
//! ```
//! use quickv_core::{
//!     coordinator::{Coordinator, GetAction, GetCoordinator, PutAction, PutCoordinator, PutRequest, Write},
//!     membership::{Membership, NodeInfo},
//!     identity::NodeId,
//!     ring::Ring,
//!     store::{StoreConfig, StoreName},
//!     token::Token,
//!     version::{CausalContext, ContextKey, Siblings},
//! };
//! use core::time::Duration;
//!
//! // Three nodes in three zones; the ring gives each a share in proportion to its capacity.
//! let mut membership = Membership::new();
//! for (id, zone) in [("a", "z1"), ("b", "z2"), ("c", "z3")] {
//!     membership.upsert(NodeInfo::new(id, "127.0.0.1:7100", zone, 1)?)?;
//! }
//! let ring = Ring::build(&membership, 10)?;
//! let config = StoreConfig::quorum(); // N=3, R=2, W=2, sloppy, siblings
//! let (store, key) = (StoreName::default_store(), b"cart:42");
//! // Replicas seal what they answer with the cluster's secret, so callers' contexts can be checked.
//! let secret = ContextKey::new([7; ContextKey::LEN]);
//!
//! // The key's replicas: three distinct nodes in three distinct zones.
//! let prefs = ring.preference_list(Token::of(key), config.n(), 2);
//! assert_eq!(prefs.primaries().len(), 3);
//!
//! // A put is a state machine: it says where to send, you feed it the replies.
//! let now = Duration::ZERO;
//! let write = Write::put(b"apples".to_vec(), CausalContext::empty(), 1_000);
//! let mut put = PutCoordinator::new(&prefs, &config, &[], write, Duration::from_millis(500), now);
//! let mut replicas: Vec<(NodeId, Siblings)> = Vec::new();
//! while let Some(action) = put.poll_action() {
//!     match action {
//!         PutAction::Send { to, request } => {
//!             // A real caller sends `request` over the network; here the replica answers inline.
//!             let (stored, answer) = match request {
//!                 PutRequest::Mint { write, .. } => {
//!                     secret.check(&store, key, &write.context)?;
//!                     let mut s = Siblings::new();
//!                     s.apply(&to, &write, config.conflicts())?;
//!                     (s.clone(), Some(secret.seal(&store, key, s)))
//!                 }
//!                 PutRequest::Replicate { siblings, .. } => (siblings, None),
//!             };
//!             replicas.push((to.clone(), stored));
//!             put.handle_reply(now, &to, Ok(answer));
//!         }
//!         PutAction::Reply(outcome) => assert!(outcome.is_ok()),
//!         PutAction::Repair { .. } => unreachable!("repairs come with reads"),
//!         // Every replica answered: no primary needs a last-resort hint.
//!         PutAction::Hint { .. } => unreachable!("every replica answered"),
//!     }
//! }
//!
//! // A get collects R replies and reconciles them.
//! let mut get = GetCoordinator::new(&prefs, &config, &[], Duration::from_millis(500), now);
//! while let Some(action) = get.poll_action() {
//!     match action {
//!         GetAction::Send { to, .. } => {
//!             let found = replicas.iter().find(|(n, _)| *n == to).map(|(_, s)| secret.seal(&store, key, s.clone()));
//!             get.handle_reply(now, &to, Ok(found));
//!         }
//!         GetAction::Reply(outcome) => {
//!             let read = outcome?;
//!             assert_eq!(read.siblings.values().next().map(|v| v.as_ref()), Some(&b"apples"[..]));
//!             // The context of the next write: sealed for this key, so nodes take it.
//!             assert_eq!(secret.check(&store, key, &read.context), Ok(()));
//!         }
//!         GetAction::Repair { .. } | GetAction::Hint { .. } => {}
//!     }
//! }
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! ## Modules
//! - [`token`]: MD5 key tokens and token ranges.
//! - [`cluster`]: the view nodes and clients share: membership, ring and store catalogue.
//! - [`identity`], [`membership`]: who is in the cluster (node ids, zones), and how two views of it merge.
//! - [`node`]: the node itself as a sans-IO state machine.
//! - [`ring`]: capacity-weighted partitions, zone-aware preference lists, ownership diffs.
//! - [`routing`]: a view ready to route with (node addresses, each key's preference list).
//! - [`version`]: version vectors, siblings, causal contexts, last-writer-wins.
//! - [`store`]: store configuration (N, R, W, quorum kind, conflict policy) and request limits.
//! - [`coordinator`]: get and put/delete coordinators as state machines; `coordinator::answers`
//!   is the one place that reads replicas' wire answers for them.
//! - [`error`]: the kinds of failure nodes report and a replica's refusal, shared by the
//!   coordinators and the wire format.
//! - [`merkle`]: Merkle trees over token ranges for anti-entropy.
//! - [`failure`]: the phi-accrual failure detector.
//! - [`gossip`]: summaries, news and verdicts, who watches whom; [`liveness`]: each node's verdict on its peers.
//! - [`wire`]: versioned, postcard-encoded wire messages; [`encoding`]: infallible postcard encoding.
//!
//! Design rationale lives in `docs/architecture.md` of the repository.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod cluster;
pub mod coordinator;
pub mod encoding;
pub mod error;
pub mod failure;
pub mod gossip;
pub mod identity;
pub mod liveness;
pub mod membership;
pub mod merkle;
pub mod node;
pub mod ring;
pub mod routing;
pub mod store;
pub mod token;
pub mod version;
pub mod wire;

pub mod mix;
