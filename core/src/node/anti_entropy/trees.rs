//! The Merkle trees a node keeps of what it stores: one per store and partition it holds keys
//! of, updated on every write.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::merkle::MerkleTree;
use crate::ring::{partition_of, partition_range};
use crate::store::StoreName;
use crate::token::{Token, TokenRange};
use crate::version::Siblings;

/// Leaves per store, about: a tree per partition has `2^(LEAF_BITS - partition_bits)` leaves
/// (at least one, at most 256), so a cluster with few partitions still compares below them.
const LEAF_BITS: u8 = 12;

/// The digest a key's state adds to its leaf.
pub(in crate::node) fn item(key: &[u8], siblings: &Siblings) -> u64 {
    MerkleTree::item_digest(key, siblings.digest())
}

/// Every tree of a node, by store and partition. A partition without a tree holds nothing (all
/// its digests are 0).
#[derive(Debug)]
pub(in crate::node) struct Trees {
    partition_bits: u8,
    depth: u8,
    stores: BTreeMap<StoreName, BTreeMap<u32, MerkleTree>>,
    /// Stores whose trees are being built from a scan of storage (at start): not compared yet.
    building: BTreeSet<StoreName>,
}

impl Trees {
    pub(in crate::node) fn new(partition_bits: u8) -> Trees {
        let depth = LEAF_BITS.saturating_sub(partition_bits).min(8);
        Trees { partition_bits, depth, stores: BTreeMap::new(), building: BTreeSet::new() }
    }

    /// The partition and leaf of `token`.
    pub(in crate::node) fn leaf_of(&self, token: Token) -> (u32, usize) {
        let partition = partition_of(self.partition_bits, token) as u32;
        let leaf = self.empty(partition).leaf_index(token).unwrap_or(0);
        (partition, leaf)
    }

    /// An empty tree of `partition`.
    fn empty(&self, partition: u32) -> MerkleTree {
        let range = partition_range(self.partition_bits, partition as usize);
        MerkleTree::new(range, self.depth).expect("the depth is at most 8, within the tree's limit")
    }

    /// Leaves per tree.
    pub(in crate::node) fn leaf_count(&self) -> usize {
        1usize << self.depth
    }

    /// A key's state changed from `before` to `after` (item digests; `None`: not stored).
    pub(in crate::node) fn update(&mut self, store: &StoreName, key: &[u8], before: Option<u64>, after: Option<u64>) {
        if before == after {
            return;
        }
        let token = Token::of(key);
        for digest in [before, after].into_iter().flatten() {
            self.toggle(store, token, digest);
        }
    }

    /// Adds `digest` to `token`'s leaf (adding it again takes it out).
    pub(in crate::node) fn toggle(&mut self, store: &StoreName, token: Token, digest: u64) {
        let partition = partition_of(self.partition_bits, token) as u32;
        let (bits, depth) = (self.partition_bits, self.depth);
        // Built only for a partition's first key, not on every write.
        let tree = self.stores.entry(store.clone()).or_default().entry(partition).or_insert_with(|| {
            MerkleTree::new(partition_range(bits, partition as usize), depth)
                .expect("the depth is at most 8, within the tree's limit")
        });
        // The token is in its partition's range by construction.
        let _ = tree.insert(token, digest);
    }

    /// Changes the digest of every leaf over `range` in `store`, so each compares different from
    /// a peer's: what storage cannot read is looked at again, whatever the tree held there.
    /// `salt` differs from one call to the next (a second disturbance with the same digest
    /// would undo the first).
    pub(in crate::node) fn disturb(&mut self, store: &StoreName, range: TokenRange, salt: u64) {
        let mut token = range.first();
        loop {
            let (partition, leaf) = self.leaf_of(token);
            self.toggle(store, token, crate::mix::mix64(token.0 as u64 ^ salt ^ 0x0b10_c4da));
            let Some(tokens) = self.empty(partition).leaf_tokens(leaf) else { return };
            if tokens.last() >= range.last() {
                return;
            }
            token = Token(tokens.last().0 + 1);
        }
    }

    /// The root of `partition` in `store` (0: nothing stored there).
    #[cfg(test)]
    pub(in crate::node) fn root(&self, store: &StoreName, partition: u32) -> u64 {
        self.tree(store, partition).map_or(0, MerkleTree::root)
    }

    /// Each partition of `store` with a tree, in order, with its root.
    pub(in crate::node) fn roots(&self, store: &StoreName) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.stores.get(store).into_iter().flat_map(|trees| trees.iter().map(|(&p, tree)| (p, tree.root())))
    }

    /// The leaves of `partition` in `store`; empty when nothing is stored there.
    pub(in crate::node) fn leaves(&self, store: &StoreName, partition: u32) -> Vec<u64> {
        self.tree(store, partition).map(|t| t.leaves().to_vec()).unwrap_or_default()
    }

    /// The leaves of `partition` whose digests differ from `theirs` (empty: all 0); `None` if
    /// `theirs` has the wrong length.
    pub(in crate::node) fn differing(&self, store: &StoreName, partition: u32, theirs: &[u64]) -> Option<Vec<usize>> {
        let zeros;
        let theirs = if theirs.is_empty() {
            zeros = alloc::vec![0; self.leaf_count()];
            &zeros[..]
        } else {
            theirs
        };
        match self.tree(store, partition) {
            Some(tree) => tree.differing_leaves(theirs).ok(),
            None => self.empty(partition).differing_leaves(theirs).ok(),
        }
    }

    /// The tokens of these leaves, sorted and joined where adjacent (what a scan asks for).
    pub(in crate::node) fn ranges(&self, leaves: &[(u32, u32)]) -> Vec<TokenRange> {
        let mut ranges: Vec<TokenRange> =
            leaves.iter().filter_map(|&(partition, leaf)| self.empty(partition).leaf_tokens(leaf as usize)).collect();
        ranges.sort_by_key(|r| r.first());
        let mut joined: Vec<TokenRange> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match joined.last_mut().and_then(|last| last.join(&range).map(|j| (last, j))) {
                Some((last, j)) => *last = j,
                None => joined.push(range),
            }
        }
        joined
    }

    /// Sets a leaf to what a scan of storage found in it: a tree that drifted from its disk
    /// (a build racing writes, a record lost or damaged) is mended by the next comparison.
    pub(in crate::node) fn mend(&mut self, store: &StoreName, partition: u32, leaf: usize, digest: u64) {
        let empty = self.empty(partition);
        let trees = self.stores.entry(store.clone()).or_default();
        let tree = trees.entry(partition).or_insert(empty);
        let _ = tree.set_leaf(leaf, digest);
        if tree.root() == 0 {
            trees.remove(&partition);
        }
    }

    fn tree(&self, store: &StoreName, partition: u32) -> Option<&MerkleTree> {
        self.stores.get(store)?.get(&partition)
    }

    /// Whether `store`'s trees can be compared (they are not being built).
    pub(in crate::node) fn ready(&self, store: &StoreName) -> bool {
        !self.building.contains(store)
    }

    pub(in crate::node) fn start_building(&mut self, store: StoreName) {
        self.stores.remove(&store);
        self.building.insert(store);
    }

    pub(in crate::node) fn built(&mut self, store: &StoreName) {
        self.building.remove(store);
    }

    /// Forgets the trees of stores `keep` says no.
    pub(in crate::node) fn retain(&mut self, keep: impl Fn(&StoreName) -> bool) {
        self.stores.retain(|s, _| keep(s));
        self.building.retain(|s| keep(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeId;
    use crate::store::ConflictPolicy;
    use crate::version::{CausalContext, Write};

    fn state(value: &[u8]) -> Siblings {
        let mut s = Siblings::new();
        s.apply(
            &NodeId::new("a").unwrap(),
            &Write::put(value.to_vec(), CausalContext::empty(), 1),
            ConflictPolicy::Siblings,
        )
        .unwrap();
        s
    }

    /// Updates on write keep a tree equal to one built from the final states, in any order,
    /// and a mended leaf takes what a scan found.
    #[test]
    fn updates_track_the_stored_states() {
        let store = StoreName::default_store();
        let mut live = Trees::new(6);
        let keys: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_le_bytes().to_vec()).collect();
        for key in &keys {
            live.update(&store, key, None, Some(item(key, &state(b"v1"))));
        }
        for key in &keys[..10] {
            live.update(&store, key, Some(item(key, &state(b"v1"))), Some(item(key, &state(b"v2"))));
        }
        let mut built = Trees::new(6);
        for (i, key) in keys.iter().enumerate() {
            let value: &[u8] = if i < 10 { b"v2" } else { b"v1" };
            built.toggle(&store, Token::of(key), item(key, &state(value)));
        }
        for p in 0..64 {
            assert_eq!(live.root(&store, p), built.root(&store, p), "partition {p}");
            assert_eq!(live.differing(&store, p, &built.leaves(&store, p)), Some(Vec::new()));
        }
        // One key differs: exactly its leaf, whose range holds it.
        let (p, leaf) = live.leaf_of(Token::of(&keys[3]));
        built.update(&store, &keys[3], Some(item(&keys[3], &state(b"v2"))), Some(item(&keys[3], &state(b"v3"))));
        assert_eq!(live.differing(&store, p, &built.leaves(&store, p)), Some(alloc::vec![leaf]));
        let ranges = live.ranges(&[(p, leaf as u32)]);
        assert!(TokenRange::find(&ranges, Token::of(&keys[3])));
        // Mending the leaf to what the other side holds makes the partitions equal.
        let theirs = built.leaves(&store, p)[leaf];
        live.mend(&store, p, leaf, theirs);
        assert_eq!(live.root(&store, p), built.root(&store, p));
        assert_eq!(live.differing(&store, p, &[0; 3]), None, "wrong length");
    }
}
