//! Cluster membership: which nodes exist, where they are and what state they are in, and how two
//! views of it merge.
//!
//! Each node's entry carries a `version` that only the node itself (or an operator acting for it)
//! raises. Merging two views keeps, per node, the entry with the higher version; equal versions
//! are resolved by a total order on the entry, so that every node that has seen the same entries
//! holds the same membership whatever the order it learnt them in.
//!
//! **Merge laws** (checked by property tests): `merge` is commutative, associative and
//! idempotent, so membership is a state-based CRDT and gossip may deliver views in any order,
//! any number of times.

use alloc::collections::BTreeMap;
use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::identity::{INCARNATION_SEPARATOR, MAX_NODE_ID_LEN, NameError, NodeId, Zone, check_name};

/// Where a node is in its life in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Joining: takes its share of the ring while data streams to it.
    Joining,
    /// A full member.
    Up,
    /// Leaving: gives its share of the ring away while its data streams out.
    Leaving,
    /// Gone for good; kept so that the removal wins over older gossip.
    Removed,
}

impl NodeStatus {
    /// Whether a node in this state owns a share of the ring.
    pub fn owns_partitions(self) -> bool {
        matches!(self, NodeStatus::Joining | NodeStatus::Up)
    }
}

/// What a node declares about itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Raised by the node each time it changes its entry; the higher version wins a merge.
    pub version: u64,
    /// The node's stable id.
    pub id: NodeId,
    /// Address callers reach the node at, for example `127.0.0.1:7101`.
    pub address: String,
    /// Zone the node runs in.
    pub zone: Zone,
    /// Relative weight: a node with capacity 2 owns twice the keys of one with capacity 1.
    pub capacity: u32,
    /// The node's state.
    pub status: NodeStatus,
}

/// Why a node entry cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeInfoError {
    /// The id is not a valid name.
    #[error("invalid node id: {0}")]
    Id(NameError),
    /// The zone is not a valid name.
    #[error("invalid zone: {0}")]
    Zone(NameError),
    /// The address is not a valid name.
    #[error("invalid address: {0}")]
    Address(NameError),
    /// Capacity must be positive.
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    /// The id contains `#` or is too long to name the node's writes (`id#incarnation`).
    #[error(
        "invalid node id {id:?}: a node id may not contain '#' and is at most {MAX_NODE_ID_LEN} bytes (its writes are named id#incarnation)"
    )]
    IdReserved {
        /// The id.
        id: String,
    },
}

impl NodeInfo {
    /// A node entry at version 1, status [`NodeStatus::Up`].
    pub fn new(id: &str, address: &str, zone: &str, capacity: u32) -> Result<NodeInfo, NodeInfoError> {
        check_name(address).map_err(NodeInfoError::Address)?;
        if capacity == 0 {
            return Err(NodeInfoError::ZeroCapacity);
        }
        if id.contains(INCARNATION_SEPARATOR) || id.len() > MAX_NODE_ID_LEN {
            return Err(NodeInfoError::IdReserved { id: id.into() });
        }
        Ok(NodeInfo {
            version: 1,
            id: NodeId::new(id).map_err(NodeInfoError::Id)?,
            address: address.into(),
            zone: Zone::new(zone).map_err(NodeInfoError::Zone)?,
            capacity,
            status: NodeStatus::Up,
        })
    }

    /// Whether this entry wins a merge against `other` (same node).
    fn supersedes(&self, other: &NodeInfo) -> bool {
        self > other
    }
}

/// A view of the cluster: one entry per node ever seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    nodes: BTreeMap<NodeId, NodeInfo>,
}

impl Membership {
    /// An empty view.
    pub fn new() -> Membership {
        Membership::default()
    }

    /// Adds an entry, keeping the winner if the node is already known. Returns whether the view
    /// changed.
    pub fn upsert(&mut self, info: NodeInfo) -> bool {
        match self.nodes.get_mut(&info.id) {
            Some(current) if !info.supersedes(current) => false,
            Some(current) => {
                *current = info;
                true
            }
            None => {
                self.nodes.insert(info.id.clone(), info);
                true
            }
        }
    }

    /// Merges another view into this one (see the module docs for the laws). Returns whether this
    /// view changed.
    pub fn merge(&mut self, other: &Membership) -> bool {
        let mut changed = false;
        for info in other.nodes.values() {
            changed |= self.upsert(info.clone());
        }
        changed
    }

    /// The entry of one node.
    pub fn node(&self, id: &NodeId) -> Option<&NodeInfo> {
        self.nodes.get(id)
    }

    /// Every entry, ordered by node id.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    /// The entries that own a share of the ring, ordered by node id.
    pub fn ring_members(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.status.owns_partitions())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(id: u8, version: u64, status: u8, capacity: u32) -> NodeInfo {
        let mut n = NodeInfo::new(&alloc::format!("n{id}"), "127.0.0.1:1", "z", capacity.max(1)).unwrap();
        n.version = version;
        n.status =
            [NodeStatus::Joining, NodeStatus::Up, NodeStatus::Leaving, NodeStatus::Removed][usize::from(status % 4)];
        n
    }

    fn view() -> impl Strategy<Value = Membership> {
        proptest::collection::vec((0u8..6, 0u64..4, 0u8..4, 1u32..3), 0..8).prop_map(|es| {
            let mut m = Membership::new();
            for (id, v, s, c) in es {
                m.upsert(entry(id, v, s, c));
            }
            m
        })
    }

    fn merged(a: &Membership, b: &Membership) -> Membership {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in view(), b in view()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in view(), b in view(), c in view()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in view(), b in view()) {
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab.clone());
            prop_assert_eq!(merged(&a, &a), a);
        }
    }

    #[test]
    fn higher_version_wins_and_zero_capacity_is_refused() {
        let mut m = Membership::new();
        assert!(m.upsert(entry(1, 2, 1, 1)));
        assert!(!m.upsert(entry(1, 1, 3, 1)));
        assert_eq!(m.node(&NodeId::new("n1").unwrap()).unwrap().status, NodeStatus::Up);
        assert!(m.upsert(entry(1, 3, 2, 1)));
        assert_eq!(NodeInfo::new("x", "a:1", "z", 0), Err(NodeInfoError::ZeroCapacity));
    }
}
