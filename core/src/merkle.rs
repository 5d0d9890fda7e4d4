//! Merkle trees over a token range, for anti-entropy.
//!
//! A tree cuts its [`TokenRange`] into `2^depth` equal leaves. Each leaf holds the XOR of the
//! digests of the keys in it (so inserting, removing or replacing a key is O(depth) and order does
//! not matter); each inner node combines its two children. Two replicas build trees of the same
//! range and depth, exchange them top-down, and [`MerkleTree::diff`] names the leaf ranges to
//! synchronise.
//!
//! ```
//! use quickv_core::{merkle::MerkleTree, token::{Token, TokenRange}};
//!
//! let mut a = MerkleTree::new(TokenRange::FULL, 10)?;
//! let mut b = a.clone();
//! for key in [&b"x"[..], b"y", b"z"] {
//!     a.insert(Token::of(key), MerkleTree::item_digest(key, 1));
//!     b.insert(Token::of(key), MerkleTree::item_digest(key, 1));
//! }
//! b.insert(Token::of(b"w"), MerkleTree::item_digest(b"w", 1));
//! let ranges = a.diff(&b)?;
//! assert_eq!(ranges.len(), 1);
//! assert!(ranges[0].contains(Token::of(b"w")));
//! # Ok::<(), quickv_core::merkle::MerkleError>(())
//! ```

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::mix::{combine, mix64};
use crate::token::{Token, TokenRange};

/// Deepest tree accepted (about a million leaves).
pub const MAX_DEPTH: u8 = 20;

/// A Merkle tree over one token range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleTree {
    range: TokenRange,
    depth: u8,
    /// Heap layout: node `i` has children `2i` and `2i+1`; the root is 1; leaves are
    /// `2^depth .. 2^(depth+1)`. Index 0 is unused.
    nodes: Vec<u64>,
}

/// Why a tree cannot be built or compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// The depth is over [`MAX_DEPTH`].
    #[error("tree depth {0} is over the limit of {MAX_DEPTH}")]
    TooDeep(u8),
    /// The trees cover different ranges or have different depths.
    #[error("trees cover different ranges or have different depths")]
    Mismatch,
    /// A token outside the tree's range was inserted.
    #[error("token {0} is outside the tree's range")]
    OutOfRange(Token),
    /// A decoded tree is not self-consistent.
    #[error("tree data has {0} nodes, which does not match its depth")]
    Inconsistent(usize),
}

impl MerkleTree {
    /// An empty tree over `range` with `2^depth` leaves.
    pub fn new(range: TokenRange, depth: u8) -> Result<MerkleTree, MerkleError> {
        if depth > MAX_DEPTH {
            return Err(MerkleError::TooDeep(depth));
        }
        Ok(MerkleTree { range, depth, nodes: alloc::vec![0; 2usize << depth] })
    }

    /// The digest of one key's state: feed it to [`insert`](Self::insert).
    /// `state` is a digest of the key's versions, such as
    /// [`Siblings::digest`](crate::version::Siblings::digest).
    pub fn item_digest(key: &[u8], state: u64) -> u64 {
        let token = Token::of(key).0;
        combine(token as u64 ^ mix64((token >> 64) as u64), state) | 1
    }

    /// Adds a key's digest. Inserting the same digest again removes it, so a change of state is
    /// `insert(token, old)` then `insert(token, new)`.
    pub fn insert(&mut self, token: Token, digest: u64) -> Result<(), MerkleError> {
        if !self.range.contains(token) {
            return Err(MerkleError::OutOfRange(token));
        }
        let mut i = (1usize << self.depth) + self.leaf_of(token);
        self.nodes[i] ^= digest;
        while i > 1 {
            i /= 2;
            self.nodes[i] = inner(self.nodes[2 * i], self.nodes[2 * i + 1]);
        }
        Ok(())
    }

    /// The root digest: equal trees have equal roots.
    pub fn root(&self) -> u64 {
        self.nodes[1]
    }

    /// The range the tree covers.
    pub fn range(&self) -> TokenRange {
        self.range
    }

    /// The ranges whose contents differ between two trees of the same range and depth, adjacent
    /// ones joined.
    pub fn diff(&self, other: &MerkleTree) -> Result<Vec<TokenRange>, MerkleError> {
        if self.range != other.range || self.depth != other.depth {
            return Err(MerkleError::Mismatch);
        }
        let mut out: Vec<TokenRange> = Vec::new();
        let mut stack = alloc::vec![1usize];
        let first_leaf = 1usize << self.depth;
        while let Some(i) = stack.pop() {
            if self.nodes[i] == other.nodes[i] {
                continue;
            }
            if i >= first_leaf {
                let Some(range) = self.leaf_range(i - first_leaf) else { continue };
                match out.last_mut().and_then(|last| last.join(&range).map(|j| (last, j))) {
                    Some((last, joined)) => *last = joined,
                    None => out.push(range),
                }
            } else {
                // Right first so the left child is popped first: ranges come out in order.
                stack.push(2 * i + 1);
                stack.push(2 * i);
            }
        }
        Ok(out)
    }

    /// How many leaves the tree has (`2^depth`).
    pub fn leaf_count(&self) -> usize {
        1usize << self.depth
    }

    /// The leaf digests, in token order: what a replica sends to compare below the root.
    pub fn leaves(&self) -> &[u64] {
        &self.nodes[self.leaf_count()..]
    }

    /// The leaf `token` falls in, if the tree covers it.
    pub fn leaf_index(&self, token: Token) -> Option<usize> {
        self.range.contains(token).then(|| self.leaf_of(token))
    }

    /// The tokens of leaf `leaf` (`None` past the last leaf, or for a leaf a narrow range leaves
    /// empty).
    pub fn leaf_tokens(&self, leaf: usize) -> Option<TokenRange> {
        if leaf >= self.leaf_count() {
            return None;
        }
        self.leaf_range(leaf)
    }

    /// The leaves whose digests differ from `leaves` (another replica's
    /// [`leaves`](Self::leaves) of the same range and depth).
    pub fn differing_leaves(&self, leaves: &[u64]) -> Result<Vec<usize>, MerkleError> {
        if leaves.len() != self.leaf_count() {
            return Err(MerkleError::Mismatch);
        }
        Ok(self.leaves().iter().zip(leaves).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect())
    }

    /// Sets one leaf's digest (the XOR of the digests of every key in it, recomputed from a scan of
    /// storage) and the inner nodes above it: how a replica mends a tree that drifted from its
    /// disk.
    pub fn set_leaf(&mut self, leaf: usize, digest: u64) -> Result<(), MerkleError> {
        if leaf >= self.leaf_count() {
            return Err(MerkleError::Inconsistent(leaf));
        }
        let mut i = self.leaf_count() + leaf;
        self.nodes[i] = digest;
        while i > 1 {
            i /= 2;
            self.nodes[i] = inner(self.nodes[2 * i], self.nodes[2 * i + 1]);
        }
        Ok(())
    }

    /// Checks a decoded tree.
    pub fn validate(&self) -> Result<(), MerkleError> {
        if self.depth > MAX_DEPTH {
            return Err(MerkleError::TooDeep(self.depth));
        }
        if self.nodes.len() != 2usize << self.depth {
            return Err(MerkleError::Inconsistent(self.nodes.len()));
        }
        Ok(())
    }

    /// Tokens per leaf, or `None` for a single leaf over the whole ring (2^128 tokens).
    fn leaf_width(&self) -> Option<u128> {
        (self.range.span() >> self.depth).checked_add(1)
    }

    fn leaf_of(&self, token: Token) -> usize {
        self.leaf_width().map_or(0, |w| ((token.0 - self.range.first().0) / w) as usize)
    }

    fn leaf_range(&self, leaf: usize) -> Option<TokenRange> {
        let Some(width) = self.leaf_width() else { return Some(self.range) };
        let start = (leaf as u128).checked_mul(width)?;
        if start > self.range.span() {
            return None;
        }
        let end = start.saturating_add(width - 1).min(self.range.span());
        let base = self.range.first().0;
        TokenRange::new(Token(base + start), Token(base + end))
    }
}

/// An inner node's digest: empty subtrees stay 0, so a tree returns to the empty tree's digests
/// when every key is removed.
fn inner(left: u64, right: u64) -> u64 {
    if left == 0 && right == 0 { 0 } else { combine(left, right) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree(range: TokenRange, depth: u8, keys: &[(u16, u64)]) -> MerkleTree {
        let mut t = MerkleTree::new(range, depth).unwrap();
        for &(k, v) in keys {
            let key = k.to_le_bytes();
            let token = Token::of(&key);
            if range.contains(token) {
                t.insert(token, MerkleTree::item_digest(&key, v)).unwrap();
            }
        }
        t
    }

    proptest! {
        /// The diff covers every key whose state differs, and nothing when trees are equal.
        #[test]
        fn diff_finds_every_difference(
            common in proptest::collection::btree_map(any::<u16>(), any::<u64>(), 0..200),
            changed in proptest::collection::btree_map(any::<u16>(), any::<u64>(), 0..5),
            depth in 0u8..12,
            half in any::<bool>(),
        ) {
            let range = if half { TokenRange::new(Token(0), Token(u128::MAX / 2)).unwrap() } else { TokenRange::FULL };
            let mut other: Vec<(u16, u64)> = common.iter().map(|(&k, &v)| (k, v)).collect();
            let base = tree(range, depth, &other);
            prop_assert_eq!(base.diff(&base.clone()).unwrap(), Vec::new());
            for (&k, &v) in &changed {
                other.retain(|(key, _)| *key != k);
                other.push((k, v.wrapping_add(1)));
            }
            let modified = tree(range, depth, &other);
            let ranges = base.diff(&modified).unwrap();
            for (&k, &v) in &changed {
                let token = Token::of(&k.to_le_bytes());
                if range.contains(token) && common.get(&k) != Some(&v.wrapping_add(1)) {
                    prop_assert!(ranges.iter().any(|r| r.contains(token)), "missed key {}", k);
                }
            }
            prop_assert!(ranges.windows(2).all(|w| w[0].last() < w[1].first()));
        }
    }

    #[test]
    fn leaves_compare_and_mend() {
        let range = TokenRange::FULL;
        let a = tree(range, 4, &[(1, 10), (2, 20), (3, 30), (400, 1)]);
        let mut b = tree(range, 4, &[(1, 10), (2, 21), (3, 30), (400, 1)]);
        let token = Token::of(&2u16.to_le_bytes());
        let leaf = a.leaf_index(token).unwrap();
        assert_eq!(a.differing_leaves(b.leaves()).unwrap(), [leaf]);
        assert!(a.leaf_tokens(leaf).unwrap().contains(token));
        // Mending b's leaf to a's digest makes the trees equal.
        b.set_leaf(leaf, a.leaves()[leaf]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.differing_leaves(&[0; 3]), Err(MerkleError::Mismatch));
        assert_eq!(a.leaf_tokens(16), None);
    }

    #[test]
    fn insert_twice_removes_and_order_does_not_matter() {
        let mut a = MerkleTree::new(TokenRange::FULL, 4).unwrap();
        let empty = a.clone();
        a.insert(Token(5), 77).unwrap();
        a.insert(Token(u128::MAX), 78).unwrap();
        let mut b = MerkleTree::new(TokenRange::FULL, 4).unwrap();
        b.insert(Token(u128::MAX), 78).unwrap();
        b.insert(Token(5), 77).unwrap();
        assert_eq!(a, b);
        a.insert(Token(5), 77).unwrap();
        a.insert(Token(u128::MAX), 78).unwrap();
        assert_eq!(a.root(), empty.root());
    }

    #[test]
    fn mismatches_and_bad_input_are_errors() {
        let a = MerkleTree::new(TokenRange::FULL, 4).unwrap();
        let b = MerkleTree::new(TokenRange::FULL, 5).unwrap();
        assert_eq!(a.diff(&b), Err(MerkleError::Mismatch));
        assert_eq!(MerkleTree::new(TokenRange::FULL, 21), Err(MerkleError::TooDeep(21)));
        let mut small = MerkleTree::new(TokenRange::new(Token(0), Token(9)).unwrap(), 3).unwrap();
        assert_eq!(small.insert(Token(10), 1), Err(MerkleError::OutOfRange(Token(10))));
        // A range narrower than the leaf count leaves some leaves empty but still works.
        small.insert(Token(9), 1).unwrap();
        let diff = small.diff(&MerkleTree::new(small.range(), 3).unwrap()).unwrap();
        assert_eq!(diff.len(), 1);
        assert!(diff[0].contains(Token(9)));
    }
}
