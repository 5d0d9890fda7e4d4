//! A write as a caller asks for it, and the id that makes it one write however often it is sent.

use serde::{Deserialize, Serialize};

use super::{CausalContext, Value};

/// What a write stores: a value, or a tombstone for a delete.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// A value.
    Value(Value),
    /// A delete.
    Tombstone,
}

impl Payload {
    /// The value, unless this is a tombstone.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Payload::Value(value) => Some(value),
            Payload::Tombstone => None,
        }
    }
}

/// Names one write, chosen at random by whoever starts it (the client, or the node coordinating
/// for a plain caller), so that sending it again (a retry, a duplicate delivery) is recognised
/// as the same write. A version keeps the id of the write that made it.
///
/// [`WriteId::NONE`] is the id of versions stored before write ids existed and of writes that
/// have none yet; it is never taken as a repeat of anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WriteId(pub u128);

impl WriteId {
    /// No id.
    pub const NONE: WriteId = WriteId(0);

    /// Whether this is [`WriteId::NONE`].
    pub fn is_none(self) -> bool {
        self == WriteId::NONE
    }
}

/// A write as a caller asks for it: what to store, what it supersedes, and when (milliseconds of
/// wall-clock time, used only by last-writer-wins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// The write's id: the same for every send of this write (see [`WriteId`]).
    pub id: WriteId,
    /// Value or tombstone.
    pub payload: Payload,
    /// The versions this write supersedes.
    pub context: CausalContext,
    /// The caller's wall clock, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Sent before, and the sender did not learn whether it was applied (a retry after
    /// [`PutError::Indeterminate`](crate::coordinator::PutError::Indeterminate)). A node that lost
    /// records in a crash answers a resent write it has no record of as indeterminate instead of
    /// minting it a second time (see `docs/storage.md`).
    pub resent: bool,
}

impl Write {
    /// A put of `value`, without an id yet (see [`with_id`](Self::with_id)).
    pub fn put(value: impl Into<Value>, context: CausalContext, timestamp: u64) -> Write {
        Write { id: WriteId::NONE, payload: Payload::Value(value.into()), context, timestamp, resent: false }
    }

    /// A delete, without an id yet.
    pub fn delete(context: CausalContext, timestamp: u64) -> Write {
        Write { id: WriteId::NONE, payload: Payload::Tombstone, context, timestamp, resent: false }
    }

    /// The same write named `id`.
    pub fn with_id(self, id: WriteId) -> Write {
        Write { id, ..self }
    }

    /// The same write, marked as sent again (see [`resent`](Self::resent)).
    pub fn resend(self) -> Write {
        Write { resent: true, ..self }
    }
}
