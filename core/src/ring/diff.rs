//! What changes between two rings: the input to handoff planning.

use alloc::vec::Vec;

use super::{Ring, RingError};
use crate::identity::NodeId;
use crate::token::TokenRange;

/// A token range whose owner (first replica) changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnershipChange {
    /// The tokens that move.
    pub range: TokenRange,
    /// The owner in the older ring.
    pub from: NodeId,
    /// The owner in the newer ring.
    pub to: NodeId,
}

/// A token range whose replica set (for a given N) changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaChange {
    /// The tokens concerned.
    pub range: TokenRange,
    /// Nodes that become replicas and must receive the range's data.
    pub gained: Vec<NodeId>,
    /// Nodes that stop being replicas and may drop it once the gainers have it.
    pub lost: Vec<NodeId>,
}

impl Ring {
    /// The ranges whose owner differs between `self` (older) and `newer`, adjacent partitions
    /// with the same move joined into one range.
    pub fn ownership_diff(&self, newer: &Ring) -> Result<Vec<OwnershipChange>, RingError> {
        self.check_comparable(newer)?;
        let mut changes: Vec<OwnershipChange> = Vec::new();
        for p in 0..self.owners.len() {
            let (from, to) = (self.owner(p), newer.owner(p));
            if from == to {
                continue;
            }
            let change = OwnershipChange { range: self.partition_range(p), from: from.clone(), to: to.clone() };
            push_joined(&mut changes, change, |c| &mut c.range, |a, b| a.from == b.from && a.to == b.to);
        }
        Ok(changes)
    }

    /// The ranges whose `n` replicas differ between `self` (older) and `newer`.
    ///
    /// Unlike ownership, a replica set can change between existing nodes: when a new node takes
    /// a partition, the zone rule may skip a node further along the walk.
    pub fn replica_diff(&self, newer: &Ring, n: usize) -> Result<Vec<ReplicaChange>, RingError> {
        self.check_comparable(newer)?;
        let mut changes: Vec<ReplicaChange> = Vec::new();
        for p in 0..self.owners.len() {
            let range = self.partition_range(p);
            let old = self.preference_list(range.first(), n, 0);
            let new = newer.preference_list(range.first(), n, 0);
            let gained: Vec<NodeId> = new.primaries().iter().filter(|id| !old.is_primary(id)).cloned().collect();
            let lost: Vec<NodeId> = old.primaries().iter().filter(|id| !new.is_primary(id)).cloned().collect();
            if gained.is_empty() && lost.is_empty() {
                continue;
            }
            let change = ReplicaChange { range, gained, lost };
            push_joined(&mut changes, change, |c| &mut c.range, |a, b| a.gained == b.gained && a.lost == b.lost);
        }
        Ok(changes)
    }

    pub(super) fn check_comparable(&self, other: &Ring) -> Result<(), RingError> {
        if self.partition_bits == other.partition_bits {
            Ok(())
        } else {
            Err(RingError::PartitionMismatch(self.partition_bits, other.partition_bits))
        }
    }
}

/// Appends `change`, or extends the last change's range when it is the same move and adjacent.
fn push_joined<C>(changes: &mut Vec<C>, mut change: C, range: fn(&mut C) -> &mut TokenRange, same: fn(&C, &C) -> bool) {
    if let Some(last) = changes.last_mut()
        && same(last, &change)
        && let Some(joined) = range(last).join(range(&mut change))
    {
        *range(last) = joined;
        return;
    }
    changes.push(change);
}
