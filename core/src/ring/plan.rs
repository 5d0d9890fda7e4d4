//! A ring change looked at before it takes effect (issue 9, 1.2): what the claimant's next ring
//! moves, node by node.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{Ring, RingError, RingVersion};
use crate::identity::NodeId;
use crate::token::Token;

/// What moving from one ring to the next changes for the replicas of `n` (the replication
/// factor the plan was worked out for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingPlan {
    /// The ring now (`None`: the cluster has none yet).
    pub current: Option<RingVersion>,
    /// The ring the change moves to; a commit (`quickv cluster commit`) names it, so a plan that
    /// changed since it was looked at is not applied.
    pub next: RingVersion,
    /// The replication factor the partitions are counted for.
    pub n: usize,
    /// Partitions in the ring.
    pub partitions: usize,
    /// Every node of either ring, by id.
    pub nodes: Vec<PlannedNode>,
}

/// One node's part of a [`RingPlan`]: the partitions it holds a replica of before and after,
/// and those it gains (must receive) and loses (hands away).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedNode {
    /// The node.
    pub id: NodeId,
    /// Partitions it is one of the `n` replicas of now.
    pub before: usize,
    /// Partitions it is one of the `n` replicas of after the change.
    pub after: usize,
    /// Partitions it becomes a replica of: their data streams to it.
    pub gained: usize,
    /// Partitions it stops being a replica of.
    pub lost: usize,
}

impl RingPlan {
    /// The plan of moving from `current` (none for a first ring) to `next`, for `n` replicas.
    pub fn between(current: Option<&Ring>, next: &Ring, n: usize) -> Result<RingPlan, RingError> {
        if let Some(current) = current {
            current.check_comparable(next)?;
        }
        let mut nodes: BTreeMap<NodeId, PlannedNode> = BTreeMap::new();
        fn entry<'a>(nodes: &'a mut BTreeMap<NodeId, PlannedNode>, id: &NodeId) -> &'a mut PlannedNode {
            nodes.entry(id.clone()).or_insert_with(|| PlannedNode {
                id: id.clone(),
                before: 0,
                after: 0,
                gained: 0,
                lost: 0,
            })
        }
        for p in 0..next.partition_count() {
            let token: Token = next.partition_range(p).first();
            let after = next.preference_list(token, n, 0);
            let before = current.map(|r| r.preference_list(token, n, 0));
            for id in after.primaries() {
                let node = entry(&mut nodes, id);
                node.after += 1;
                if !before.as_ref().is_some_and(|b| b.is_primary(id)) {
                    node.gained += 1;
                }
            }
            for id in before.iter().flat_map(|b| b.primaries()) {
                let node = entry(&mut nodes, id);
                node.before += 1;
                if !after.is_primary(id) {
                    node.lost += 1;
                }
            }
        }
        Ok(RingPlan {
            current: current.map(Ring::version),
            next: next.version(),
            n,
            partitions: next.partition_count(),
            nodes: nodes.into_values().collect(),
        })
    }

    /// Partition replicas that move (each gained by one node).
    pub fn moves(&self) -> usize {
        self.nodes.iter().map(|n| n.gained).sum()
    }
}
