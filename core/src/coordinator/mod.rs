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

mod forward;
mod get;
mod put;
mod replicas;
mod shell;

use crate::version::SealedState;
use crate::wire::{ErrorKind, ErrorReply, Response};

pub use forward::{ForwardAction, ForwardPut};
pub use get::{GetAction, GetCoordinator, GetError, GetOutcome};
pub use put::{Hint, PutAction, PutCoordinator, PutError, PutOutcome, PutRequest};
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
    Refused(ErrorReply),
}

impl ReplicaFailure {
    /// What a replica's error answer means to a coordinator: a replica that cannot tell whether
    /// it applied a write (indeterminate) may have; errors the node reports as retryable
    /// (unavailable, internal, stale ring) leave room for another replica; others say the
    /// request itself is invalid. The one place this mapping is written.
    pub fn from_reply(reply: ErrorReply) -> ReplicaFailure {
        match reply.kind {
            ErrorKind::Indeterminate => ReplicaFailure::NoAnswer,
            kind if kind.is_retryable() => ReplicaFailure::Unavailable,
            _ => ReplicaFailure::Refused(reply),
        }
    }
}

/// A replica's answer to a replica read ([`GetAction::Send`]), as the get coordinator takes it.
/// Any answer of another kind counts as the replica being unavailable.
pub fn read_answer(response: Response) -> Result<Option<SealedState>, ReplicaFailure> {
    match response {
        Response::State(state) => Ok(state),
        other => Err(unexpected(other)),
    }
}

/// A replica's answer to a [`PutRequest`], as the put coordinator takes it: the minted state for
/// a mint, `None` for an acknowledged replicate.
pub fn write_answer(request: &PutRequest, response: Response) -> Result<Option<SealedState>, ReplicaFailure> {
    match (request, response) {
        (PutRequest::Mint { .. }, Response::State(Some(state))) => Ok(Some(state)),
        (PutRequest::Replicate { .. }, Response::Ack) => Ok(None),
        (_, other) => Err(unexpected(other)),
    }
}

fn unexpected(response: Response) -> ReplicaFailure {
    match response {
        Response::Error(reply) if reply.kind == ErrorKind::StaleRing => ReplicaFailure::Unavailable,
        Response::Error(reply) => ReplicaFailure::from_reply(reply),
        // A success of the wrong kind: the replica acted on something, who knows what.
        _ => ReplicaFailure::NoAnswer,
    }
}

#[cfg(test)]
mod tests;
