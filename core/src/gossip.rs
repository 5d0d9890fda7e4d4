//! Gossip: what nodes exchange to keep their views in step and to know who is alive, at a cost
//! per node that does not grow with the cluster.
//!
//! **Views.** Every [`sync_interval`](crate::node::NodeConfig::sync_interval) a node sends a
//! [`GossipDigest`] to the peers it watches (below) and to one peer chosen at random. The digest
//! summarises the sender's view in a few dozen bytes whatever the cluster's size
//! ([`ViewSummary`]: a fingerprint of every node entry's version, the ring's epoch and digest, a
//! fingerprint of the store catalogue), and carries the sender's **news**: the parts of its view
//! that changed lately, each sent a few dozen times, as SWIM piggybacks membership changes. The
//! receiver merges the news; if the summaries still differ, it answers with its whole
//! [`ViewDigest`] (per node entry: id, version, fingerprint), the sender pushes what the peer
//! lacks and asks, with its own whole digest, for what it lacks itself (the peer's answer is a
//! **delta**, [`ClusterView::delta_between`](crate::cluster::ClusterView::delta_between)). Views
//! merge by the laws of [`ClusterView::merge`](crate::cluster::ClusterView::merge), so news
//! already known or a delta the other side wins over are harmless. Whole digests (about 20
//! bytes per node entry) travel only when the news did not make the views agree: a node back
//! from a partition, or changes older than the news keeps.
//!
//! **Liveness.** Each node *watches* a few peers ([`Watch`]: the
//! [`watch_count`](crate::node::NodeConfig::watch_count) that follow it on a circle of the
//! members ordered by a hash of their ids) and is watched by as many. A watcher gossips with each
//! peer it watches every interval; every gossip message carries the sender's own [`Heartbeat`],
//! so a node hears each peer *close* to it (it watches it, or is watched by it) directly every
//! interval, and runs its phi-accrual detector on those ([`crate::liveness`]). When a node's
//! verdict on a peer it watches changes, it spreads a [`Verdict`] (subject, observer, the
//! observer's heartbeat as the verdict's time, state) the way news spreads: every node takes the
//! latest verdict of each observer, and judges a peer that is not close to it by the verdicts
//! of that peer's watchers (see [`crate::liveness`]). No node ever sends or tracks every node's
//! heartbeat: bytes per node per second stay flat as the cluster grows
//! (`quickv-sim --gossip-scale`; the figures are in `docs/cluster.md`).
//!
//! A heartbeat is `(generation, beat)`: the generation is the node's wall clock when it started,
//! so the first heartbeat of a restarted node is newer than every heartbeat of its previous
//! life; the node raises the beat every round. A node's own report of its heartbeat is believed
//! even if it is older (its clock went back across a restart).

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterView;
use crate::identity::NodeId;
use crate::liveness::PeerState;

/// One node's proof of life: see the module docs. Ordered by generation, then beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node's wall clock when it started, in milliseconds since the Unix epoch.
    pub generation: u64,
    /// Raised by the node every gossip round.
    pub beat: u64,
}

/// What one node's entry is, in a whole digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryDigest {
    /// The node.
    pub id: NodeId,
    /// The entry's version.
    pub version: u64,
    /// A fingerprint of the whole entry (entries of one version may differ).
    pub fingerprint: u64,
}

/// A view in a few dozen bytes, whatever the cluster's size: two views with equal summaries
/// are (but for a 64-bit fingerprint collision) the same view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewSummary {
    /// log2 of the ring's partition count (views of other clusters do not merge).
    pub partition_bits: u8,
    /// How many node entries the view holds.
    pub nodes: u32,
    /// A fingerprint of every node entry's digest, in order of id.
    pub entries: u64,
    /// The ring's epoch and digest, once there is a ring.
    pub ring: Option<(u64, u64)>,
    /// A fingerprint of the store catalogue (dropped stores included).
    pub stores: u64,
}

/// A view entry by entry: what a node sends when summaries differ and the news did not make
/// them agree. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDigest {
    /// log2 of the ring's partition count.
    pub partition_bits: u8,
    /// Every node entry, ordered by id.
    pub entries: Vec<EntryDigest>,
    /// The ring's epoch and digest, once there is a ring.
    pub ring: Option<(u64, u64)>,
    /// A fingerprint of the store catalogue (dropped stores included).
    pub stores: u64,
}

impl ViewDigest {
    /// The view's summary.
    pub fn summary(&self) -> ViewSummary {
        ViewSummary {
            partition_bits: self.partition_bits,
            nodes: u32::try_from(self.entries.len()).unwrap_or(u32::MAX),
            entries: fingerprint(&self.entries),
            ring: self.ring,
            stores: self.stores,
        }
    }

    /// Whether two digests describe the same view.
    pub fn same_view(&self, other: &ViewDigest) -> bool {
        self == other
    }

    /// The digest of one node's entry, if the digest has one.
    pub fn entry(&self, id: &NodeId) -> Option<&EntryDigest> {
        self.entries.binary_search_by(|e| e.id.cmp(id)).ok().map(|i| &self.entries[i])
    }

    /// Whether the entries are ordered by id, each id once (decoded digests are checked).
    pub fn is_well_formed(&self) -> bool {
        self.entries.windows(2).all(|w| w[0].id < w[1].id)
    }
}

/// How much of its view a gossip message shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewWord {
    /// The summary only: the usual round.
    Summary(ViewSummary),
    /// Every entry: summaries differed. A request carrying it asks for a delta.
    Whole(ViewDigest),
}

impl ViewWord {
    /// The view's summary.
    pub fn summary(&self) -> ViewSummary {
        match self {
            ViewWord::Summary(summary) => *summary,
            ViewWord::Whole(digest) => digest.summary(),
        }
    }
}

/// An observer's verdict on a peer it watches, spread through the cluster: see the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The peer judged.
    pub subject: NodeId,
    /// The node that judged it (one of the subject's watchers).
    pub observer: NodeId,
    /// The observer's heartbeat when it judged: of two verdicts of one observer on one
    /// subject, the one with the later heartbeat is the latest.
    pub at: Heartbeat,
    /// The verdict.
    pub state: PeerState,
}

/// The most verdicts one gossip message carries (decoded messages with more are refused).
pub const MAX_VERDICTS: usize = 16;

/// What a node sends in every gossip message: see the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipDigest {
    /// The sender's view: its summary, or every entry.
    pub view: ViewWord,
    /// The sender's own heartbeat.
    pub heartbeat: Heartbeat,
    /// Parts of the sender's view that changed lately.
    pub news: Option<alloc::boxed::Box<ClusterView>>,
    /// Verdicts the sender is spreading (at most [`MAX_VERDICTS`]).
    pub verdicts: Vec<Verdict>,
}

/// Which peers each member watches: the members on a circle ordered by a hash of their ids,
/// each watching the `count` that follow it (so each is watched by the `count` before it).
/// Every node with the same member list computes the same circle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    /// The members in circle order: by fingerprint of the id, then id.
    circle: Vec<(u64, NodeId)>,
    count: usize,
}

impl Watch {
    /// The circle of `members` (in any order, each once), each watching `count` peers.
    pub fn new(members: impl IntoIterator<Item = NodeId>, count: usize) -> Watch {
        let mut circle: Vec<(u64, NodeId)> = members.into_iter().map(|id| (fingerprint(&id), id)).collect();
        circle.sort();
        circle.dedup_by(|a, b| a.1 == b.1);
        Watch { circle, count }
    }

    /// The peers `id` watches (none if it is not on the circle).
    pub fn watched_by(&self, id: &NodeId) -> Vec<NodeId> {
        self.around(id, true).collect()
    }

    /// The peers that watch `id`.
    pub fn watchers_of(&self, id: &NodeId) -> Vec<NodeId> {
        self.around(id, false).collect()
    }

    /// Whether `id` is on the circle.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.position(id).is_some()
    }

    /// Whether `watcher` watches `id`.
    pub fn watches(&self, watcher: &NodeId, id: &NodeId) -> bool {
        self.around(id, false).any(|w| w == *watcher)
    }

    /// Whether `a` and `b` are close: one watches the other.
    pub fn close(&self, a: &NodeId, b: &NodeId) -> bool {
        a != b && (self.watches(a, b) || self.watches(b, a))
    }

    /// The members on either side of `id`, nearest first (found in the circle by its
    /// fingerprint: a lookup, not a walk, so a node of a large cluster pays little for it).
    fn around(&self, id: &NodeId, forward: bool) -> impl Iterator<Item = NodeId> + '_ {
        let len = self.circle.len();
        let at = self.position(id);
        let steps = if at.is_some() { len.min(self.count.saturating_add(1)) } else { 0 };
        let at = at.unwrap_or(0);
        (1..steps)
            .map(move |step| if forward { (at + step) % len } else { (at + len - step) % len })
            .map(|i| self.circle[i].1.clone())
    }

    fn position(&self, id: &NodeId) -> Option<usize> {
        let key = fingerprint(id);
        self.circle.binary_search_by(|(f, n)| (*f, n).cmp(&(key, id))).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn ids(count: usize) -> Vec<NodeId> {
        (0..count).map(|i| NodeId::new(&format!("n{i}")).unwrap()).collect()
    }

    /// Each member watches `count` peers and is watched by `count` (fewer in a small cluster),
    /// never itself; the two relations mirror each other; the order members are given in does
    /// not matter.
    #[test]
    fn every_member_watches_and_is_watched_by_as_many() {
        for (members, count) in [(1, 3), (2, 3), (4, 3), (7, 3), (50, 3), (50, 1)] {
            let nodes = ids(members);
            let watch = Watch::new(nodes.clone(), count);
            let mut reversed = nodes.clone();
            reversed.reverse();
            assert_eq!(watch, Watch::new(reversed, count));
            let expected = count.min(members - 1);
            for n in &nodes {
                let watched = watch.watched_by(n);
                assert_eq!(watched.len(), expected, "{members} members");
                assert!(!watched.contains(n));
                assert_eq!(watch.watchers_of(n).len(), expected);
                for w in &watched {
                    assert!(watch.watchers_of(w).contains(n));
                    assert!(watch.close(n, w) && watch.close(w, n));
                }
            }
        }
        assert!(Watch::new(ids(3), 3).watched_by(&NodeId::new("other").unwrap()).is_empty());
    }
}
