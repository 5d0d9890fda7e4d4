//! Version vectors and dots.

use alloc::collections::BTreeMap;
use core::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

/// One write event: the `counter`-th write coordinated by `actor`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The node that minted the dot.
    pub actor: NodeId,
    /// Its per-key counter, starting at 1.
    pub counter: u64,
}

/// How two version vectors relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causality {
    /// Same history.
    Equal,
    /// The left one is strictly older (the right one has seen all of it).
    Before,
    /// The left one is strictly newer.
    After,
    /// Neither has seen all of the other.
    Concurrent,
}

/// For each actor, how many of its writes have been seen (contiguously from 1).
///
/// **Merge laws**: [`merge`](VersionVector::merge) is the pointwise maximum, hence commutative,
/// associative and idempotent. Zero entries are never stored, so equal histories are equal values.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<NodeId, u64>);

impl VersionVector {
    /// The empty vector (has seen nothing).
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// How many of `actor`'s writes are covered.
    pub fn counter(&self, actor: &NodeId) -> u64 {
        self.0.get(actor).copied().unwrap_or(0)
    }

    /// Whether the write `dot` is covered.
    pub fn covers(&self, dot: &Dot) -> bool {
        dot.counter <= self.counter(&dot.actor)
    }

    /// Records every write up to `dot`.
    pub fn add(&mut self, dot: &Dot) {
        if dot.counter > self.counter(&dot.actor) {
            self.0.insert(dot.actor.clone(), dot.counter);
        }
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VersionVector) {
        for (actor, &counter) in &other.0 {
            let entry = self.0.entry(actor.clone()).or_insert(0);
            *entry = (*entry).max(counter);
        }
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        let mut less = false;
        let mut greater = false;
        for (actor, &mine) in &self.0 {
            match mine.cmp(&other.counter(actor)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
        }
        for (actor, &theirs) in &other.0 {
            if theirs > self.counter(actor) {
                less = true;
            }
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// Whether `self` has seen everything `other` has.
    pub fn descends(&self, other: &VersionVector) -> bool {
        matches!(self.compare(other), Causality::Equal | Causality::After)
    }

    /// The entries, ordered by actor.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.0.iter().map(|(a, &c)| (a, c))
    }

    /// Number of actors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether no entry is zero (the canonical form every constructor keeps).
    pub(crate) fn is_canonical(&self) -> bool {
        self.0.values().all(|&c| c > 0)
    }
}
