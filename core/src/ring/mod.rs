//! The ring: who owns which keys.
//!
//! quickv uses Dynamo's third partitioning strategy: the 128-bit token space is cut into
//! `2^partition_bits` equal partitions, fixed for the life of the cluster, and partitions are
//! assigned to nodes in proportion to their declared capacity. A key lives in the partition its
//! [`Token`] falls in; its preference list is the walk clockwise over partition owners from there
//! (see [`Ring::preference_list`]).
//!
//! A ring is versioned data (`epoch`) derived from the membership *and the previous ring*:
//! [`Ring::next`] moves only the partitions that must move (those of nodes that left, and the
//! surplus of nodes above their share, to nodes below theirs), so adding a node moves data only
//! to it and removing one moves only its data. Every node and client holding the same ring
//! computes the same preference lists. Why this scheme rather than random virtual-node tokens is
//! explained in `docs/architecture.md`.

mod balance;
mod diff;
mod plan;
mod preference;

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::identity::{NodeId, Zone};
use crate::membership::Membership;
use crate::mix::{combine, mix64};
use crate::token::{Token, TokenRange};

pub use diff::{OwnershipChange, ReplicaChange};
pub use plan::{PlannedNode, RingPlan};
pub use preference::{INLINE_NODES, PreferenceList, Walk};

/// Fewest partition bits accepted (16 partitions).
pub const MIN_PARTITION_BITS: u8 = 4;
/// Most partition bits accepted (about 4 million partitions).
pub const MAX_PARTITION_BITS: u8 = 22;
/// Default partition bits: 65,536 partitions, enough for about 1,000 nodes within 2% of their
/// share. Clusters meant to grow to 10,000 nodes should be created with 20 bits.
pub const DEFAULT_PARTITION_BITS: u8 = 16;

/// A node as the ring sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingNode {
    /// The node's id.
    pub id: NodeId,
    /// The node's zone.
    pub zone: Zone,
    /// The node's capacity (weight).
    pub capacity: u32,
}

/// A ring's version as a request routed with it carries: its epoch and digest. The claimant
/// makes one ring per epoch, so two rings of one epoch should never be; a replica still compares
/// both, and answers a request routed with another ring of its epoch (or an older ring)
/// `StaleRing` (issue 9, 1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RingVersion {
    /// The ring's epoch.
    pub epoch: u64,
    /// Its digest ([`Ring::digest`]).
    pub digest: u64,
}

impl core::fmt::Display for RingVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "epoch {} (digest {:016x})", self.epoch, self.digest)
    }
}

/// Partition ownership at one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RingParts", into = "RingParts")]
pub struct Ring {
    epoch: u64,
    partition_bits: u8,
    /// Ring members, sorted by id.
    nodes: Vec<RingNode>,
    /// Zone index of each node (parallel to `nodes`).
    zone_of: Vec<u32>,
    zone_count: u32,
    /// Owner (index into `nodes`) of each partition.
    owners: Vec<u32>,
    /// [`Ring::digest`], worked out once (it reads every partition's owner: 65,536 by default),
    /// never encoded.
    digest: u64,
}

/// A ring as it is encoded: every field but the digest, in the order they always had.
#[derive(Clone, Serialize, Deserialize)]
struct RingParts {
    epoch: u64,
    partition_bits: u8,
    nodes: Vec<RingNode>,
    zone_of: Vec<u32>,
    zone_count: u32,
    owners: Vec<u32>,
}

impl From<RingParts> for Ring {
    fn from(p: RingParts) -> Ring {
        let digest = RingParts::digest(p.epoch, p.partition_bits, &p.nodes, &p.owners);
        Ring {
            epoch: p.epoch,
            partition_bits: p.partition_bits,
            nodes: p.nodes,
            zone_of: p.zone_of,
            zone_count: p.zone_count,
            owners: p.owners,
            digest,
        }
    }
}

impl From<Ring> for RingParts {
    fn from(r: Ring) -> RingParts {
        RingParts {
            epoch: r.epoch,
            partition_bits: r.partition_bits,
            nodes: r.nodes,
            zone_of: r.zone_of,
            zone_count: r.zone_count,
            owners: r.owners,
        }
    }
}

impl RingParts {
    fn digest(epoch: u64, partition_bits: u8, nodes: &[RingNode], owners: &[u32]) -> u64 {
        let mut d = mix64(epoch ^ (u64::from(partition_bits) << 56));
        for node in nodes {
            d = combine(d, Token::of(node.id.as_str().as_bytes()).0 as u64);
            d = combine(d, Token::of(node.zone.as_str().as_bytes()).0 as u64 ^ u64::from(node.capacity));
        }
        for &owner in owners {
            d = combine(d, u64::from(owner));
        }
        d
    }
}

/// Why a ring cannot be built or compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// No node in the membership owns partitions.
    #[error("the membership has no node that can own partitions")]
    NoMembers,
    /// The partition count is outside the accepted range.
    #[error("partition bits must be between {MIN_PARTITION_BITS} and {MAX_PARTITION_BITS}, got {0}")]
    PartitionBits(u8),
    /// More nodes than the ring can index.
    #[error("{nodes} nodes is more than the {partitions} partitions of the ring")]
    TooManyNodes {
        /// Ring members.
        nodes: usize,
        /// Partitions.
        partitions: usize,
    },
    /// Two rings with different partition counts cannot be compared.
    #[error("rings have different partition counts ({0} and {1} bits)")]
    PartitionMismatch(u8, u8),
    /// A decoded ring is not self-consistent.
    #[error("ring data is inconsistent: {0}")]
    Inconsistent(&'static str),
}

impl Ring {
    /// The first ring of a cluster: `2^partition_bits` partitions spread over the membership's
    /// ring members by capacity.
    pub fn build(membership: &Membership, partition_bits: u8) -> Result<Ring, RingError> {
        if !(MIN_PARTITION_BITS..=MAX_PARTITION_BITS).contains(&partition_bits) {
            return Err(RingError::PartitionBits(partition_bits));
        }
        balance::assign(None, membership, partition_bits, 1)
    }

    /// The ring that follows this one after a membership change: only the partitions that must
    /// move, move. The epoch is raised by one.
    pub fn next(&self, membership: &Membership) -> Result<Ring, RingError> {
        balance::assign(Some(self), membership, self.partition_bits, self.epoch + 1)
    }

    /// The ring's version; raised by each [`Ring::next`].
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The same partition owners at another epoch (a committed transition's ring is its next
    /// ring one epoch later, so that the two never share a version).
    pub fn with_epoch(&self, epoch: u64) -> Ring {
        let parts = RingParts::from(self.clone());
        Ring::from(RingParts { epoch, ..parts })
    }

    /// The epoch and digest, as requests routed with this ring carry them.
    pub fn version(&self) -> RingVersion {
        RingVersion { epoch: self.epoch, digest: self.digest }
    }

    /// log2 of the partition count.
    pub fn partition_bits(&self) -> u8 {
        self.partition_bits
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> usize {
        self.owners.len()
    }

    /// Ring members, sorted by id.
    pub fn nodes(&self) -> &[RingNode] {
        &self.nodes
    }

    /// Number of distinct zones among ring members.
    pub fn zone_count(&self) -> usize {
        self.zone_count as usize
    }

    /// The partition a token falls in.
    pub fn partition_of(&self, token: Token) -> usize {
        partition_of(self.partition_bits, token)
    }

    /// The tokens of one partition.
    pub fn partition_range(&self, partition: usize) -> TokenRange {
        partition_range(self.partition_bits, partition)
    }

    /// The owner of a partition (the first node of its preference list).
    pub fn owner(&self, partition: usize) -> &NodeId {
        &self.nodes[self.owners[partition % self.owners.len()] as usize].id
    }

    /// The share of the ring each member owns, in member order (fractions summing to 1).
    pub fn shares(&self) -> Vec<(NodeId, f64)> {
        let mut counts = alloc::vec![0usize; self.nodes.len()];
        for &o in &self.owners {
            counts[o as usize] += 1;
        }
        let total = self.owners.len() as f64;
        self.nodes.iter().zip(counts).map(|(n, c)| (n.id.clone(), c as f64 / total)).collect()
    }

    /// A digest of the whole ring (epoch, members and partition owners). Two rings with the same
    /// digest are, in practice, the same ring; gossip uses it to pick one of two rings of equal
    /// epoch deterministically.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Checks the invariants a decoded ring must hold before it is used.
    pub fn validate(&self) -> Result<(), RingError> {
        if !(MIN_PARTITION_BITS..=MAX_PARTITION_BITS).contains(&self.partition_bits) {
            return Err(RingError::PartitionBits(self.partition_bits));
        }
        if self.owners.len() != 1usize << self.partition_bits {
            return Err(RingError::Inconsistent("partition table has the wrong length"));
        }
        if self.nodes.is_empty() || self.zone_of.len() != self.nodes.len() {
            return Err(RingError::Inconsistent("node table is empty or misaligned"));
        }
        if !self.nodes.windows(2).all(|w| w[0].id < w[1].id) {
            return Err(RingError::Inconsistent("nodes are not sorted and distinct"));
        }
        if self.zone_of.iter().any(|&z| z >= self.zone_count) {
            return Err(RingError::Inconsistent("zone index out of range"));
        }
        if self.owners.iter().any(|&o| o as usize >= self.nodes.len()) {
            return Err(RingError::Inconsistent("partition owner out of range"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// The partition `token` falls in when the ring has `2^bits` partitions (every ring of a cluster
/// has the same count: [`ClusterView::partition_bits`](crate::cluster::ClusterView::partition_bits)).
pub fn partition_of(bits: u8, token: Token) -> usize {
    token.0.checked_shr(128 - u32::from(bits)).unwrap_or(0) as usize
}

/// The tokens of partition `partition` of `2^bits`.
pub fn partition_range(bits: u8, partition: usize) -> TokenRange {
    let shift = 128 - u32::from(bits);
    let first = (partition as u128).checked_shl(shift).unwrap_or(0);
    let last = first | 1u128.checked_shl(shift).map_or(u128::MAX, |w| w - 1);
    TokenRange::new(Token(first), Token(last)).unwrap_or(TokenRange::FULL)
}
