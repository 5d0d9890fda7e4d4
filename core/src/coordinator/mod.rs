//! Request coordinators: quorum logic as state machines with no I/O.
//!
//! The node that coordinates a request for a plain caller and the smart client that coordinates
//! its own requests drive the *same* machines, so quorum counting, sloppy fallbacks, hints and
//! read repair are written once.
//!
//! Every machine has the same shape, the [`Coordinator`] trait, and emits the same
//! [`Action`]s (with its own request and outcome types); the queueing of actions, the one reply
//! and the end are written once (`shell.rs`):
//!
//! - build it with the key's [`PreferenceList`](crate::ring::PreferenceList), the store's
//!   [`StoreConfig`](crate::store::StoreConfig), a per-replica timeout and `now`;
//! - call `poll_action` until it returns `None` and perform each action (send a request to a
//!   replica, return the outcome to the caller, repair a replica);
//! - feed every replica's answer to `handle_reply` and, when the time `poll_timeout` names has
//!   come, call `handle_timeout`; then poll actions again;
//! - stop when `is_finished` says so. Answers that arrive later are ignored.
//!
//! `now` is any monotonic [`Duration`](core::time::Duration) since an origin of the caller's.
//! A machine replies exactly once: success as soon as the quorum is met, failure as soon as it can
//! no longer be met. Deletes are puts of a tombstone ([`Write::delete`]).

mod answers;
mod forward;
mod get;
mod put;
mod replicas;
mod routed;
mod shell;

pub use crate::error::Refusal;

pub use answers::{Handed, handed_answer, read_answer, write_answer};
pub use forward::{ForwardAction, ForwardPut};
pub use get::{GetAction, GetCoordinator, GetError, GetOutcome};
pub use put::{Hint, JointQuorum, PutAction, PutCoordinator, PutError, PutOutcome, PutRequest};
pub use routed::RoutedRequests;
pub use shell::{Action, Coordinator, Read};

pub use crate::version::Write;

/// Why one replica did not serve a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaFailure {
    /// The replica did not act on the request: it could not be reached (no connection), or it
    /// answered that it cannot serve now (overloaded, storage error, stale ring). Another replica
    /// or a fallback may serve instead.
    Unavailable,
    /// The request went out but no answer came (timeout, connection lost, an answer that makes
    /// no sense): the replica may have acted on it. A read counts it as a missing answer; a
    /// write never asks another node to apply what this one may have applied.
    NoAnswer,
    /// The replica judged the request itself invalid (for example a forged context); no other
    /// replica would accept it either, so the request fails with this reason.
    Refused(Refusal),
}

#[cfg(test)]
mod tests;
