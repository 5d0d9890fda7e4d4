//! Siblings: the stored state of one key, and the two ways it changes (a write, a merge).

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::{Dot, Payload, Value, VersionVector, Write, WriteId};
use crate::identity::NodeId;
use crate::mix::{combine, mix64};
use crate::store::ConflictPolicy;

/// One version of a key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sibling {
    /// The write that made it.
    pub dot: Dot,
    /// Wall-clock milliseconds of the write (for last-writer-wins).
    pub timestamp: u64,
    /// Value or tombstone.
    pub payload: Payload,
    /// The id of the write that made it ([`WriteId::NONE`] for versions stored before ids).
    pub write: WriteId,
}

/// The state of one key: every version not superseded, and the history they summarise.
///
/// **Merge laws**: for well-formed states (see [`Siblings::validate`]), [`Siblings::merge`] under
/// either policy is commutative, associative and idempotent, so replicas converge whatever order
/// repairs, handoffs and anti-entropy deliver states in. Under `Siblings` it keeps a version iff
/// the other side holds it too or has not seen it; under `Lww` it keeps the greatest version by
/// (timestamp, dot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Siblings {
    history: VersionVector,
    /// Sorted by dot, dots distinct.
    versions: Vec<Sibling>,
}

/// Why a write cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The context claims writes by this replica that it never made: the context is forged,
    /// corrupted, or from another cluster. Retrying the same context will fail again.
    #[error("causal context claims {claimed} writes by {actor}, which has made only {known}")]
    ContextFromTheFuture {
        /// The replica minting the write.
        actor: NodeId,
        /// What the context claims.
        claimed: u64,
        /// What the replica has.
        known: u64,
    },
    /// The replica has minted every counter a key can hold for this actor (2^64 - 1 writes).
    #[error("{actor} has no dot left for this key")]
    CountersExhausted {
        /// The replica minting the write.
        actor: NodeId,
    },
}

/// Why a decoded state is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SiblingsError {
    /// Versions are out of order or repeat a dot.
    #[error("sibling versions are not sorted by distinct dots")]
    Unsorted,
    /// A version's dot is not in the history.
    #[error("a sibling's dot is not covered by the history")]
    Uncovered,
    /// The history holds a zero entry.
    #[error("history is not canonical")]
    NotCanonical,
}

impl Siblings {
    /// The state of a key never written.
    pub fn new() -> Siblings {
        Siblings::default()
    }

    /// Applies a write at the replica `actor`, which mints its dot. Returns the dot.
    ///
    /// A write whose id is already the id of a version here is a repeat of that write (a retry,
    /// a duplicate delivery): it changes nothing and returns that version's dot.
    pub fn apply(&mut self, actor: &NodeId, write: &Write, policy: ConflictPolicy) -> Result<Dot, ApplyError> {
        self.apply_above(actor, write, policy, 0)
    }

    /// [`apply`](Self::apply), minting a counter above `floor` too: the highest counter `actor`
    /// may have minted for this key in a record it no longer holds (a collected tombstone, a
    /// dropped copy), so that no dot is ever minted twice. Counters of an actor need not be
    /// contiguous: a vector entry says which dots it covers, not how many writes there were.
    pub fn apply_above(
        &mut self,
        actor: &NodeId,
        write: &Write,
        policy: ConflictPolicy,
        floor: u64,
    ) -> Result<Dot, ApplyError> {
        if let Some(done) = self.version_of(write.id) {
            return Ok(done.dot.clone());
        }
        let seen = write.context.vector();
        let known = self.history.counter(actor).max(floor);
        let claimed = seen.counter(actor);
        if claimed > known {
            return Err(ApplyError::ContextFromTheFuture { actor: actor.clone(), claimed, known });
        }
        let counter = known.checked_add(1).ok_or_else(|| ApplyError::CountersExhausted { actor: actor.clone() })?;
        let dot = Dot { actor: actor.clone(), counter };
        // A write is later than everything it supersedes even if clocks disagree: than the
        // versions here its context covers, and than every version its reader saw (the context's
        // newest timestamp), held here or not.
        let floor = self
            .versions
            .iter()
            .filter(|v| seen.covers(&v.dot))
            .map(|v| v.timestamp)
            .chain((!write.context.is_empty()).then(|| write.context.latest()))
            .max()
            .map_or(0, |t| t.saturating_add(1));
        let timestamp = write.timestamp.max(floor);
        self.versions.retain(|v| !seen.covers(&v.dot));
        self.history.merge(&seen);
        self.history.add(&dot);
        self.versions.push(Sibling { dot: dot.clone(), timestamp, payload: write.payload.clone(), write: write.id });
        self.versions.sort_unstable_by(|a, b| a.dot.cmp(&b.dot));
        if policy == ConflictPolicy::Lww {
            self.keep_latest();
        }
        Ok(dot)
    }

    /// Merges another replica's state of the same key into this one (see the merge laws above).
    pub fn merge(&mut self, other: &Siblings, policy: ConflictPolicy) {
        self.versions = match policy {
            ConflictPolicy::Siblings => self.unseen_union(other),
            // Greatest of the union, regardless of coverage: a total order keeps the laws.
            ConflictPolicy::Lww => {
                self.versions.iter().chain(&other.versions).max_by(|x, y| x.lww_cmp(y)).cloned().into_iter().collect()
            }
        };
        self.history.merge(&other.history);
    }

    /// The versions of both sides that both hold or that the other side has not seen, by dot.
    fn unseen_union(&self, other: &Siblings) -> Vec<Sibling> {
        let mut merged: Vec<Sibling> = Vec::with_capacity(self.versions.len() + other.versions.len());
        let (mine, theirs) = (&self.versions, &other.versions);
        let (mut i, mut j) = (0, 0);
        while i < mine.len() || j < theirs.len() {
            match (mine.get(i), theirs.get(j)) {
                (Some(x), Some(y)) if x.dot == y.dot => {
                    merged.push(if x >= y { x.clone() } else { y.clone() });
                    i += 1;
                    j += 1;
                }
                (Some(x), y) if y.is_none_or(|y| x.dot < y.dot) => {
                    if !other.history.covers(&x.dot) {
                        merged.push(x.clone());
                    }
                    i += 1;
                }
                (_, Some(y)) => {
                    if !self.history.covers(&y.dot) {
                        merged.push(y.clone());
                    }
                    j += 1;
                }
                (None, None) | (Some(_), None) => break,
            }
        }
        merged
    }

    fn keep_latest(&mut self) {
        if let Some(best) = self.versions.iter().max_by(|x, y| x.lww_cmp(y)).cloned() {
            self.versions = alloc::vec![best];
        }
    }

    /// The version made by write `id`, if it is here (never for [`WriteId::NONE`]).
    pub fn version_of(&self, id: WriteId) -> Option<&Sibling> {
        if id.is_none() { None } else { self.versions.iter().find(|v| v.write == id) }
    }

    /// A state from its parts, checked as [`validate`](Self::validate) does (for decoding older
    /// formats).
    pub fn from_parts(history: VersionVector, versions: Vec<Sibling>) -> Result<Siblings, SiblingsError> {
        let state = Siblings { history, versions };
        state.validate()?;
        Ok(state)
    }

    /// The versions, tombstones included, sorted by dot.
    pub fn versions(&self) -> &[Sibling] {
        &self.versions
    }

    /// The live values (tombstones left out).
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.versions.iter().filter_map(|v| v.payload.value())
    }

    /// Whether the key reads as absent: never written, or every version is a tombstone.
    pub fn is_absent(&self) -> bool {
        self.values().next().is_none()
    }

    /// Whether the key was deleted: it holds versions, and every one is a tombstone (what
    /// tombstone collection may remove once every replica holds it).
    pub fn is_tombstone(&self) -> bool {
        !self.versions.is_empty() && self.is_absent()
    }

    /// Every write this state has seen.
    pub fn history(&self) -> &VersionVector {
        &self.history
    }

    /// The newest timestamp among the versions (0 for a key never written): what a context of
    /// this state carries, so that a write that read it is stamped later.
    pub fn latest(&self) -> u64 {
        self.versions.iter().map(|v| v.timestamp).max().unwrap_or(0)
    }

    /// Checks the invariants merge relies on; call it on states decoded from disk or network.
    pub fn validate(&self) -> Result<(), SiblingsError> {
        if !self.history.is_canonical() {
            return Err(SiblingsError::NotCanonical);
        }
        if !self.versions.windows(2).all(|w| w[0].dot < w[1].dot) {
            return Err(SiblingsError::Unsorted);
        }
        if !self.versions.iter().all(|v| self.history.covers(&v.dot)) {
            return Err(SiblingsError::Uncovered);
        }
        Ok(())
    }

    /// An upper bound of the state's encoded size in bytes (values, dots, ids, timestamps and the
    /// history), cheap to compute: what limits compare with.
    pub fn size_bound(&self) -> usize {
        // Varints: a u64 takes at most 10 bytes, a u128 at most 19, a length at most 10.
        let entry = |actor: &NodeId| actor.as_str().len() + 20;
        let history: usize = self.history.iter().map(|(actor, _)| entry(actor)).sum();
        let versions: usize = self
            .versions
            .iter()
            .map(|v| entry(&v.dot.actor) + 10 + 19 + 11 + v.payload.value().map_or(0, |value| value.len()))
            .sum();
        20 + history + versions
    }

    /// A 64-bit digest of the state, equal for equal states (for Merkle trees and repair).
    pub fn digest(&self) -> u64 {
        let mut h = 0u64;
        for (actor, counter) in self.history.iter() {
            h = combine(h, combine(bytes_digest(actor.as_str().as_bytes()), counter));
        }
        for v in &self.versions {
            let payload = match &v.payload {
                Payload::Value(value) => bytes_digest(value.as_ref()),
                Payload::Tombstone => u64::MAX,
            };
            h = combine(h, combine(combine(bytes_digest(v.dot.actor.as_str().as_bytes()), v.dot.counter), payload));
        }
        h
    }
}

impl Sibling {
    fn lww_cmp(&self, other: &Sibling) -> core::cmp::Ordering {
        (self.timestamp, &self.dot, &self.payload).cmp(&(other.timestamp, &other.dot, &other.payload))
    }
}

fn bytes_digest(bytes: &[u8]) -> u64 {
    let mut h = mix64(bytes.len() as u64);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = combine(h, u64::from_le_bytes(word));
    }
    h
}
