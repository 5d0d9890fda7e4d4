//! The kinds of failure a node reports, and a replica's refusal: the vocabulary the coordinators
//! decide with and the wire format carries ([`crate::wire::ErrorReply`] adds what only the wire
//! needs). Coordinators depend on this module, not on the wire.

use alloc::string::String;

use serde::{Deserialize, Serialize};

/// Kinds of failure a node reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The frame could not be decoded.
    Malformed,
    /// The store does not exist.
    UnknownStore,
    /// A key or value is over a limit (the message names it).
    TooLarge,
    /// The causal context is invalid.
    InvalidContext,
    /// The store exists with another configuration.
    StoreConflict,
    /// Not enough replicas answered; retry later.
    Unavailable,
    /// The node failed internally (for example storage); retry elsewhere.
    Internal,
    /// The sender routed with another ring than the node's (an older one, or another of the
    /// same epoch): refresh the cluster view from that node and route again.
    StaleRing,
    /// The request needs a node certificate of the cluster.
    NotPermitted,
    /// The node asked to apply a write did not answer: the write may or may not have been
    /// applied. Retry the same write (same id) to find out.
    Indeterminate,
    /// A node asked to join with an id that belongs to a node with another certificate.
    NodeIdTaken,
}

impl ErrorKind {
    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Internal | ErrorKind::StaleRing | ErrorKind::Indeterminate)
    }

    /// The stable code callers of the HTTPS API and of the JavaScript client see for this kind
    /// (`docs/http-api.md`), and the HTTP status it is answered with. A code never changes
    /// meaning.
    pub fn code(self) -> (u16, &'static str) {
        match self {
            ErrorKind::Malformed => (400, "malformed"),
            ErrorKind::UnknownStore => (404, "unknown_store"),
            ErrorKind::TooLarge => (413, "too_large"),
            ErrorKind::InvalidContext => (400, "invalid_context"),
            ErrorKind::StoreConflict => (409, "store_conflict"),
            ErrorKind::Unavailable => (503, "unavailable"),
            ErrorKind::Internal => (500, "internal"),
            ErrorKind::StaleRing => (503, "stale_ring"),
            ErrorKind::NotPermitted => (403, "not_permitted"),
            ErrorKind::Indeterminate => (503, "indeterminate"),
            ErrorKind::NodeIdTaken => (409, "node_id_taken"),
        }
    }
}

/// A replica's (or node's) refusal of a request it judged invalid: the kind, and its message,
/// lowercase, naming the limit or field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What the node said.
    pub message: String,
}

impl Refusal {
    /// A refusal of this kind with this message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Refusal {
        Refusal { kind, message: message.into() }
    }
}
