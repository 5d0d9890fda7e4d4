//! Versioning: how concurrent writes are told apart and reconciled.
//!
//! quickv versions each key the way Riak 2 does with *dotted version vectors*: a stored key is a
//! set of [`Siblings`], each tagged with the unique [`Dot`] (node, counter) of the write that made
//! it, plus one [`VersionVector`] summarising every write the key's history holds. A write names
//! what its author had seen with a [`CausalContext`] (the vector it read); it supersedes exactly
//! the siblings that context covers and nothing else, so concurrent writes become siblings and a
//! write that read them all replaces them all.
//!
//! Dots are minted by the replica that coordinates the write (never by clients), so vectors grow
//! with the number of nodes that ever coordinated writes, not with clients, and the number of
//! siblings is bounded by the number of writers that raced, not by the number of writes. Nothing
//! is ever truncated.
//!
//! Contexts are sealed: the node that answers a read MACs the state's history with the cluster's
//! [`ContextKey`], binding it to the store and key, and the node that applies a write checks the
//! seal first, so a context of another key, a forged or an altered one is refused. A context also
//! carries the newest timestamp it has seen: a write is stamped later than everything it read.
//!
//! Deletes write a tombstone sibling. Under the last-writer-wins policy a key holds one version,
//! the greatest by (timestamp, dot).

mod clock;
mod context;
mod key_record;
mod seal;
mod siblings;
pub mod v1;
pub mod v2;
mod value;
mod write;

pub use clock::{Causality, Dot, VersionVector};
pub use context::{CONTEXT_FORMAT, CausalContext, ContextError, ContextPart, MAX_CONTEXT_PARTS, Seal};
pub use key_record::KeyRecord;
pub use seal::{ContextKey, SealedState};
pub use siblings::{ApplyError, Sibling, Siblings, SiblingsError};
pub use value::Value;
pub use write::{Payload, Write, WriteId};

#[cfg(test)]
mod tests;
