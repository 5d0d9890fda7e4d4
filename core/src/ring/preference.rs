//! Preference lists: the replicas of a key, and the fallbacks that stand in for them.

use alloc::vec::Vec;

use super::Ring;
use crate::identity::NodeId;
use crate::token::Token;

/// The replicas of one key, in order, and the fallbacks a sloppy quorum may use.
///
/// `primaries` are the first N distinct physical nodes met walking clockwise from the key's
/// partition, skipping nodes whose zone is already represented while fewer than N zones are;
/// `fallbacks` continue the same walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferenceList {
    token: Token,
    primaries: Vec<NodeId>,
    fallbacks: Vec<NodeId>,
}

impl PreferenceList {
    /// A preference list from parts; callers normally get one from [`Ring::preference_list`].
    pub fn from_parts(token: Token, primaries: Vec<NodeId>, fallbacks: Vec<NodeId>) -> PreferenceList {
        PreferenceList { token, primaries, fallbacks }
    }

    /// The key's token.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The true replicas, in preference order. Fewer than N only when the ring has fewer nodes.
    pub fn primaries(&self) -> &[NodeId] {
        &self.primaries
    }

    /// The nodes that stand in for unreachable primaries, in order.
    pub fn fallbacks(&self) -> &[NodeId] {
        &self.fallbacks
    }

    /// Whether `node` is one of the primaries.
    pub fn is_primary(&self, node: &NodeId) -> bool {
        self.primaries.contains(node)
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
    pub fn preference_list(&self, token: Token, n: usize, max_fallbacks: usize) -> PreferenceList {
        let n = n.min(self.nodes.len());
        let target_zones = n.min(self.zone_count as usize);
        let mut walk = self.walk(token);
        let mut primaries: Vec<u32> = Vec::with_capacity(n);
        let mut zones: Vec<u32> = Vec::with_capacity(target_zones);
        let mut skipped: Vec<u32> = Vec::new();
        while primaries.len() < n {
            let Some(i) = walk.next_index() else { break };
            let zone = self.zone_of[i as usize];
            if zones.len() < target_zones && zones.contains(&zone) {
                skipped.push(i);
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
        let ids = |v: Vec<u32>| v.into_iter().map(|i| self.nodes[i as usize].id.clone()).collect();
        PreferenceList { token, primaries: ids(primaries), fallbacks: ids(fallbacks) }
    }
}
