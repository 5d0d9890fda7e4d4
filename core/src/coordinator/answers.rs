//! Replicas' answers as the coordinators take them: the one place that reads wire answers
//! ([`Response`], [`ErrorReply`]) and maps them to what a coordinator decides with.

use super::ReplicaFailure;
use crate::error::ErrorKind;
use crate::identity::NodeId;
use crate::version::SealedState;
use crate::wire::{ErrorReply, Response};

impl ReplicaFailure {
    /// What a replica's error answer means to a coordinator: a replica that cannot tell whether
    /// it applied a write (indeterminate) may have; errors the node reports as retryable
    /// (unavailable, internal, stale ring) leave room for another replica; others say the
    /// request itself is invalid.
    pub fn from_reply(reply: ErrorReply) -> ReplicaFailure {
        match reply.kind {
            ErrorKind::Indeterminate => ReplicaFailure::NoAnswer,
            kind if kind.is_retryable() => ReplicaFailure::Unavailable,
            _ => ReplicaFailure::Refused(reply.into_refusal()),
        }
    }
}

/// A replica's answer to a replica read ([`Read`](super::Read)), as the get coordinator takes it.
/// Any answer of another kind counts as the replica being unavailable.
pub fn read_answer(response: Response) -> Result<Option<SealedState>, ReplicaFailure> {
    match response {
        Response::State(state) => Ok(state),
        other => Err(unexpected(other)),
    }
}

/// A replica's answer to a [`PutRequest`](super::PutRequest), as the put coordinator takes it:
/// the minted state for a mint, `None` for an acknowledged replicate.
pub fn write_answer(request: &super::PutRequest, response: Response) -> Result<Option<SealedState>, ReplicaFailure> {
    match (request, response) {
        (super::PutRequest::Mint { .. }, Response::State(Some(state))) => Ok(Some(state)),
        (super::PutRequest::Replicate { .. }, Response::Ack) => Ok(None),
        (_, other) => Err(unexpected(other)),
    }
}

/// What the replica a put was handed to ([`ForwardPut`](super::ForwardPut)) answered, beyond
/// the failures every replica answer may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handed {
    /// It applied the write and W replicas hold it: the state after the write.
    Applied(SealedState),
    /// It cannot tell whether the write was applied: at `minter` (a node it asked to mint), or at
    /// itself when `None`.
    Undecided {
        /// The node that may hold the write.
        minter: Option<NodeId>,
    },
    /// The write was applied at `minter`, but too few replicas acknowledged it.
    Short {
        /// The node that applied it.
        minter: NodeId,
    },
}

/// A replica's answer to `CoordinatePut`, as [`ForwardPut`](super::ForwardPut) takes it.
pub fn handed_answer(response: Response) -> Result<Handed, ReplicaFailure> {
    match response {
        Response::State(Some(state)) if state.siblings.validate().is_ok() => Ok(Handed::Applied(state)),
        Response::Error(e) if e.kind == ErrorKind::Indeterminate => Ok(Handed::Undecided { minter: e.minter }),
        Response::Error(ErrorReply { kind: ErrorKind::Unavailable, minter: Some(minter), .. }) => {
            Ok(Handed::Short { minter })
        }
        // Not applied there (cannot serve now, routed with an old ring): the next may.
        Response::Error(e) if e.kind.is_retryable() => Err(ReplicaFailure::Unavailable),
        // Refused there (a store it does not know yet, a context it cannot take).
        Response::Error(e) => Err(ReplicaFailure::Refused(e.into_refusal())),
        // An answer that makes no sense: the write may or may not be there.
        _ => Err(ReplicaFailure::NoAnswer),
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
