//! The causal context: what a caller had seen when it read a key, as an opaque, sealed token.
//!
//! A context is a set of **parts**. Each part is one replica state's history, the highest
//! timestamp among its versions, and a [`Seal`]: a MAC a node computed over the store, the key,
//! the history and the timestamp with the cluster's [`ContextKey`](super::ContextKey). Nodes
//! accept a context only when every part's seal checks for the key being written, so a context
//! of another key, another cluster, or one edited by hand is refused and changes nothing.
//!
//! A node that coordinates a get seals the merged state as one part; a smart client, which holds
//! no secret, merges the parts the replicas sealed. Merging keeps only the parts no other part
//! covers, so a context of a key read once holds one part, or a few after concurrent states.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::VersionVector;

/// Format marker of the context token's bytes; the first byte of every token. Format 1 (before
/// contexts were sealed) is refused with [`ContextError::UnsupportedFormat`].
pub const CONTEXT_FORMAT: u8 = 2;

/// The most parts a context may hold (see [`CausalContext`]); a merge of contexts from many
/// concurrent reads that needs more is refused when decoded: read the key again.
pub const MAX_CONTEXT_PARTS: usize = 16;

/// A node's MAC over one context part (truncated HMAC-SHA-256, 128 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Seal(pub [u8; 16]);

impl Seal {
    /// No seal: what parts decoded from formats before sealing carry. It never checks.
    pub const NONE: Seal = Seal([0; 16]);
}

/// One sealed part of a context: a state's history, its newest timestamp, and the seal over both.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContextPart {
    history: VersionVector,
    latest: u64,
    seal: Seal,
}

impl ContextPart {
    /// A part from its pieces, as a node sealed it (or as a decoder read it). Whether the seal
    /// is right is for [`ContextKey::check`](super::ContextKey::check) to say.
    pub fn new(history: VersionVector, latest: u64, seal: Seal) -> ContextPart {
        ContextPart { history, latest, seal }
    }

    /// The writes the sealed state had seen.
    pub fn history(&self) -> &VersionVector {
        &self.history
    }

    /// The highest timestamp among the sealed state's versions.
    pub fn latest(&self) -> u64 {
        self.latest
    }

    /// The seal.
    pub fn seal(&self) -> Seal {
        self.seal
    }

    /// The order parts are kept in: by seal, then content (a total order, for a canonical token).
    fn order(&self) -> (Seal, &VersionVector, u64) {
        (self.seal, &self.history, self.latest)
    }

    /// Whether `self` makes `other` redundant: it has seen all `other` has, as late. Of two
    /// parts with the same content the one with the smaller seal is kept, so the order is total
    /// on equal contents and merging stays commutative.
    fn covers(&self, other: &ContextPart) -> bool {
        let content = self.history.descends(&other.history) && self.latest >= other.latest;
        let same = self.history == other.history && self.latest == other.latest;
        content && (!same || self.seal <= other.seal)
    }
}

/// An opaque token naming the versions a caller has seen. `get` hands one out; `put` and
/// `delete` take it back to say which versions they supersede.
///
/// Its bytes are a format byte ([`CONTEXT_FORMAT`]) then the postcard encoding of its parts; its
/// text form is that, base64url without padding. Callers should treat both as opaque: nodes
/// refuse a token they did not seal for the key it is used with.
///
/// **Merge laws**: [`merge`](Self::merge) keeps the parts of the union that no other part covers
/// (see [`ContextPart`]): commutative, associative and idempotent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CausalContext {
    /// Sorted by [`ContextPart::order`]; no part covers another.
    parts: Vec<ContextPart>,
}

/// Why a context token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The token is empty.
    #[error("causal context is empty; pass the context a get returned, or none for a blind write")]
    Empty,
    /// The text is not base64url.
    #[error("causal context is not valid base64url")]
    NotBase64,
    /// The token was made by another format version.
    #[error(
        "causal context has format {0}, this build reads format {CONTEXT_FORMAT}: read the key again for a \
         current context"
    )]
    UnsupportedFormat(u8),
    /// The bytes do not decode, or break the token's invariants.
    #[error("causal context is malformed")]
    Malformed,
    /// The token holds more parts than a context may.
    #[error("causal context has more than {MAX_CONTEXT_PARTS} parts: read the key again for a compact context")]
    TooManyParts,
    /// A part's seal does not check for this key.
    #[error(
        "causal context was not issued by this cluster for this key (a context of another key or store, of \
         another cluster, or altered): read the key again and write with the context it returns"
    )]
    NotSealed,
}

impl CausalContext {
    /// The context of a caller that has seen nothing (a blind write).
    pub fn empty() -> CausalContext {
        CausalContext::default()
    }

    /// A context of these parts (normalised: parts other parts cover are left out).
    pub fn from_parts(parts: impl IntoIterator<Item = ContextPart>) -> CausalContext {
        let mut context = CausalContext::empty();
        for part in parts {
            context.insert(part);
        }
        context
    }

    /// The parts, sorted by seal (then content).
    pub fn parts(&self) -> &[ContextPart] {
        &self.parts
    }

    /// Every write the context has seen: the merge of its parts' histories.
    pub fn vector(&self) -> VersionVector {
        let mut seen = VersionVector::new();
        for part in &self.parts {
            seen.merge(&part.history);
        }
        seen
    }

    /// The highest timestamp the context has seen (0 for an empty one).
    pub fn latest(&self) -> u64 {
        self.parts.iter().map(|p| p.latest).max().unwrap_or(0)
    }

    /// Whether the caller had seen nothing.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether the token keeps its invariants: canonical histories, parts in order, none
    /// covering another, at most [`MAX_CONTEXT_PARTS`]. Decoders check it.
    pub fn is_well_formed(&self) -> bool {
        self.parts.len() <= MAX_CONTEXT_PARTS
            && self.parts.iter().all(|p| p.history.is_canonical() && !p.history.is_empty())
            && self.parts.windows(2).all(|w| w[0].order() < w[1].order())
            && self
                .parts
                .iter()
                .enumerate()
                .all(|(i, p)| self.parts.iter().enumerate().all(|(j, q)| i == j || !q.covers(p)))
    }

    /// Merges another context in (the caller has now seen both).
    pub fn merge(&mut self, other: &CausalContext) {
        for part in &other.parts {
            self.insert(part.clone());
        }
    }

    fn insert(&mut self, part: ContextPart) {
        if part.history.is_empty() || self.parts.iter().any(|p| p.covers(&part)) {
            return;
        }
        self.parts.retain(|p| !part.covers(p));
        let at = self.parts.partition_point(|p| p.order() < part.order());
        self.parts.insert(at, part);
    }

    /// The token's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = alloc::vec![CONTEXT_FORMAT];
        out.extend(crate::encoding::to_vec(&self.parts));
        out
    }

    /// Parses a token's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<CausalContext, ContextError> {
        let (&format, body) = bytes.split_first().ok_or(ContextError::Empty)?;
        if format != CONTEXT_FORMAT {
            return Err(ContextError::UnsupportedFormat(format));
        }
        let (parts, rest): (Vec<ContextPart>, _) =
            postcard::take_from_bytes(body).map_err(|_| ContextError::Malformed)?;
        if parts.len() > MAX_CONTEXT_PARTS {
            return Err(ContextError::TooManyParts);
        }
        let context = CausalContext { parts };
        if !rest.is_empty() || !context.is_well_formed() {
            return Err(ContextError::Malformed);
        }
        Ok(context)
    }

    /// The context a format without seals carried: one unsealed part, which nodes refuse (the
    /// caller reads the key again); an empty vector stays a blind write.
    pub(crate) fn unsealed(vector: VersionVector) -> CausalContext {
        CausalContext::from_parts([ContextPart::new(vector, 0, Seal::NONE)])
    }
}

impl fmt::Display for CausalContext {
    /// The text form of the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }
}

impl FromStr for CausalContext {
    type Err = ContextError;

    fn from_str(s: &str) -> Result<CausalContext, ContextError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ContextError::Empty);
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| ContextError::NotBase64)?;
        CausalContext::from_bytes(&bytes)
    }
}

impl From<CausalContext> for String {
    fn from(c: CausalContext) -> String {
        alloc::format!("{c}")
    }
}
