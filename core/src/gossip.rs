//! Gossip: what nodes exchange every round to keep their views in step and to show they live.
//!
//! Every [`sync_interval`](crate::node::NodeConfig::sync_interval) a node picks one peer at
//! random and sends it a [`GossipDigest`]: per node entry its id, version and a fingerprint, the
//! ring's epoch and digest, a fingerprint of the store catalogue, and the freshest
//! [`Heartbeat`] it knows of each node. It never sends the whole view. The peer answers with its
//! own digest and a **delta**, the parts of its view that differ from the digest
//! ([`ClusterView::delta_for`]); the first node merges it, works out what the peer lacks from
//! the peer's digest, and sends that back (a third message, only when there is something to
//! send). Because views merge by the laws of [`ClusterView::merge`] (idempotent, and a delta is a
//! part of a view), sending an entry the other side already wins over is harmless, and after one
//! exchange both sides hold the same view.
//!
//! **Cost.** A digest is about 25 to 35 bytes per node of the cluster (the id, two varints, a
//! fingerprint, a heartbeat), whatever the size of the ring or the catalogue; a round costs each
//! node about two digests a second plus the deltas of actual changes. The simulation reports
//! the bytes per node per second at 10, 100 and 1,000 nodes (`quickv-sim --gossip-scale`; the
//! figures are in `docs/cluster.md`).
//!
//! **Heartbeats** feed each node's failure detector ([`crate::failure`]): a node raises its own
//! heartbeat every round; a heartbeat newer than the one held, learnt from anyone, is evidence
//! the node was alive recently. A heartbeat is `(generation, beat)`: the generation is the
//! node's wall clock when it started, so the first heartbeat of a restarted node is newer than
//! every heartbeat of its previous life. A node's own report of its heartbeat is believed even
//! if it is older (its clock went back across a restart).

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

/// One node's proof of life: see the module docs. Ordered by generation, then beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node's wall clock when it started, in milliseconds since the Unix epoch.
    pub generation: u64,
    /// Raised by the node every gossip round.
    pub beat: u64,
}

/// What one node's entry is, in a digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryDigest {
    /// The node.
    pub id: NodeId,
    /// The entry's version.
    pub version: u64,
    /// A fingerprint of the whole entry (entries of one version may differ).
    pub fingerprint: u64,
    /// The freshest heartbeat of the node the sender knows, if any.
    pub heartbeat: Option<Heartbeat>,
}

/// A summary of a cluster view and the heartbeats its holder knows: see the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipDigest {
    /// log2 of the ring's partition count (views of other clusters do not merge).
    pub partition_bits: u8,
    /// Every node entry, ordered by id.
    pub entries: Vec<EntryDigest>,
    /// The ring's epoch and digest, once there is a ring.
    pub ring: Option<(u64, u64)>,
    /// A fingerprint of the store catalogue (dropped stores included).
    pub stores: u64,
}

impl GossipDigest {
    /// Whether two digests describe the same view (heartbeats aside).
    pub fn same_view(&self, other: &GossipDigest) -> bool {
        self.partition_bits == other.partition_bits
            && self.ring == other.ring
            && self.stores == other.stores
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.id == b.id && a.version == b.version && a.fingerprint == b.fingerprint)
    }

    /// The digest of one node's entry, if the digest has one.
    pub fn entry(&self, id: &NodeId) -> Option<&EntryDigest> {
        self.entries.binary_search_by(|e| e.id.cmp(id)).ok().map(|i| &self.entries[i])
    }
}

/// A 64-bit fingerprint of a value's encoding (MD5, for spread rather than security).
pub(crate) fn fingerprint<T: Serialize + ?Sized>(value: &T) -> u64 {
    use md5::{Digest, Md5};
    let digest: [u8; 16] = Md5::digest(crate::encoding::to_vec(value)).into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}
