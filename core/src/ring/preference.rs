//! Preference lists: the replicas of a key, and the fallbacks that stand in for them.

use alloc::vec::Vec;

use smallvec::SmallVec;

use super::Ring;
use crate::identity::NodeId;
use crate::token::Token;

/// How many nodes a preference list holds without allocating: N replicas and fallbacks
/// together (N=3 with the default 3 fallbacks needs 6). Longer lists still work; they allocate.
pub const INLINE_NODES: usize = 8;

/// The replicas of one key, in order, and the fallbacks a sloppy quorum may use.
///
/// `primaries` are the first N distinct physical nodes met walking clockwise from the key's
/// partition, skipping nodes whose zone is already represented while fewer than N zones are;
/// `fallbacks` continue the same walk.
///
/// Routing a request builds one per request: the nodes are held inline (up to
/// [`INLINE_NODES`]; a node id is a shared string, so holding one copies a pointer), and
/// [`Ring::preference_list`] does not allocate for such a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferenceList {
    token: Token,
    /// The primaries, then the fallbacks.
    nodes: SmallVec<[NodeId; INLINE_NODES]>,
    primaries: usize,
}

impl PreferenceList {
    /// A preference list from parts; callers normally get one from [`Ring::preference_list`].
    pub fn from_parts(token: Token, primaries: Vec<NodeId>, fallbacks: Vec<NodeId>) -> PreferenceList {
        let count = primaries.len();
        let mut nodes = SmallVec::from_vec(primaries);
        nodes.extend(fallbacks);
        PreferenceList { token, nodes, primaries: count }
    }

    /// The key's token.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The true replicas, in preference order. Fewer than N only when the ring has fewer nodes.
    pub fn primaries(&self) -> &[NodeId] {
        &self.nodes[..self.primaries]
    }

    /// The nodes that stand in for unreachable primaries, in order.
    pub fn fallbacks(&self) -> &[NodeId] {
        &self.nodes[self.primaries..]
    }

    /// Whether `node` is one of the primaries.
    pub fn is_primary(&self, node: &NodeId) -> bool {
        self.primaries().contains(node)
    }
}

/// A set of node indices, sized to the ring.
struct Seen(Vec<u64>);

impl Seen {
    fn new(nodes: usize) -> Seen {
        Seen(alloc::vec![0; nodes.div_ceil(64)])
    }

    /// Marks `i`; returns whether it was new.
    fn insert(&mut self, i: u32) -> bool {
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }
}

/// The distinct nodes met walking clockwise from a token, in order (no zone rule). Yields each
/// ring member once; ends after a full turn, or as soon as every member has been met (so asking
/// for more nodes than a small cluster has does not walk every partition).
pub struct Walk<'a> {
    ring: &'a Ring,
    partition: usize,
    steps_left: usize,
    unseen: usize,
    seen: Seen,
}

impl<'a> Walk<'a> {
    fn next_index(&mut self) -> Option<u32> {
        let mask = self.ring.owners.len() - 1;
        while self.steps_left > 0 && self.unseen > 0 {
            let owner = self.ring.owners[self.partition & mask];
            self.partition = self.partition.wrapping_add(1);
            self.steps_left -= 1;
            if self.seen.insert(owner) {
                self.unseen -= 1;
                return Some(owner);
            }
        }
        None
    }
}

impl<'a> Iterator for Walk<'a> {
    type Item = &'a NodeId;

    fn next(&mut self) -> Option<&'a NodeId> {
        let ring = self.ring;
        self.next_index().map(|i| &ring.nodes[i as usize].id)
    }
}

impl Ring {
    /// The distinct nodes clockwise from `token`'s partition.
    pub fn walk(&self, token: Token) -> Walk<'_> {
        Walk {
            ring: self,
            partition: self.partition_of(token),
            steps_left: self.owners.len(),
            unseen: self.nodes.len(),
            seen: Seen::new(self.nodes.len()),
        }
    }

    /// The preference list of `token` for `n` replicas, with up to `max_fallbacks` fallbacks.
    ///
    /// Primaries are the first `n` distinct nodes clockwise, spread over `n` distinct zones when
    /// the ring has at least `n` zones (otherwise over every zone, then filled in walk order).
    /// Fallbacks are the nodes the zone rule skipped, then the rest of the walk.
    ///
    /// Allocates nothing when `n + max_fallbacks` is at most [`INLINE_NODES`] and the walk
    /// meets fewer than [`MET_INLINE`] nodes before the list is whole (the zone rule would have
    /// to skip about 30 nodes in a row): the walk keeps the nodes it met inline instead of a set
    /// sized to the ring.
    pub fn preference_list(&self, token: Token, n: usize, max_fallbacks: usize) -> PreferenceList {
        type Indices = SmallVec<[u32; INLINE_NODES]>;
        let n = n.min(self.nodes.len());
        let target_zones = n.min(self.zone_count as usize);
        let mut walk = ShortWalk::new(self, token);
        let mut primaries = Indices::new();
        let mut zones = Indices::new();
        // Skipped nodes fill the primaries once the zones are spread, then the fallbacks: no
        // more than `n + max_fallbacks` of them are ever used.
        let mut skipped = Indices::new();
        while primaries.len() < n {
            let Some(i) = walk.next_index() else { break };
            let zone = self.zone_of[i as usize];
            if zones.len() < target_zones && zones.contains(&zone) {
                if skipped.len() < n + max_fallbacks {
                    skipped.push(i);
                }
                continue;
            }
            primaries.push(i);
            if !zones.contains(&zone) {
                zones.push(zone);
            }
            if zones.len() >= target_zones {
                let room = (n - primaries.len()).min(skipped.len());
                primaries.extend(skipped.drain(..room));
            }
        }
        let mut fallbacks = skipped;
        fallbacks.truncate(max_fallbacks);
        while fallbacks.len() < max_fallbacks {
            let Some(i) = walk.next_index() else { break };
            fallbacks.push(i);
        }
        let id = |i: u32| self.nodes[i as usize].id.clone();
        let nodes = primaries.iter().chain(fallbacks.iter()).map(|&i| id(i)).collect();
        PreferenceList { token, nodes, primaries: primaries.len() }
    }
}

/// The walk of a preference list: like [`Walk`], but it remembers the nodes it met in a short
/// inline list instead of a set sized to the ring (a preference list meets a handful of nodes).
struct ShortWalk<'a> {
    ring: &'a Ring,
    partition: usize,
    steps_left: usize,
    met: SmallVec<[u32; MET_INLINE]>,
}

/// How many nodes a preference list's walk remembers without allocating.
pub const MET_INLINE: usize = 32;

impl<'a> ShortWalk<'a> {
    fn new(ring: &'a Ring, token: Token) -> ShortWalk<'a> {
        ShortWalk { ring, partition: ring.partition_of(token), steps_left: ring.owners.len(), met: SmallVec::new() }
    }

    /// The next node not met yet; `None` after a full turn or once every member was met.
    fn next_index(&mut self) -> Option<u32> {
        let mask = self.ring.owners.len() - 1;
        while self.steps_left > 0 && self.met.len() < self.ring.nodes.len() {
            let owner = self.ring.owners[self.partition & mask];
            self.partition = self.partition.wrapping_add(1);
            self.steps_left -= 1;
            if !self.met.contains(&owner) {
                self.met.push(owner);
                return Some(owner);
            }
        }
        None
    }
}
