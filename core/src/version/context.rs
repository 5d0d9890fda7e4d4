//! The causal context: what a caller had seen when it read a key, as an opaque token.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::VersionVector;

/// Format marker of the context token's bytes; the first byte of every token.
pub const CONTEXT_FORMAT: u8 = 1;

/// An opaque token naming the versions a caller has seen. `get` hands one out; `put` and
/// `delete` take it back to say which versions they supersede.
///
/// Its bytes are a format byte ([`CONTEXT_FORMAT`]) then the postcard encoding of a version
/// vector; its text form is that, base64url without padding. Callers should treat both as opaque.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CausalContext(VersionVector);

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
    /// The token was made by an unknown format version.
    #[error("causal context has format {0}, this build reads format {CONTEXT_FORMAT}")]
    UnsupportedFormat(u8),
    /// The bytes do not decode.
    #[error("causal context is malformed")]
    Malformed,
}

impl CausalContext {
    /// The context of a caller that has seen nothing (a blind write).
    pub fn empty() -> CausalContext {
        CausalContext::default()
    }

    /// The context of a caller that has seen `vector`.
    pub fn from_vector(vector: VersionVector) -> CausalContext {
        CausalContext(vector)
    }

    /// The version vector inside.
    pub fn vector(&self) -> &VersionVector {
        &self.0
    }

    /// Whether the caller had seen nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the vector inside is canonical (no zero entries); decoders check it.
    pub fn is_well_formed(&self) -> bool {
        self.0.is_canonical()
    }

    /// Merges another context in (the caller has now seen both).
    pub fn merge(&mut self, other: &CausalContext) {
        self.0.merge(&other.0);
    }

    /// The token's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = alloc::vec![CONTEXT_FORMAT];
        // Serialising a map of strings and integers into a Vec cannot fail.
        out.extend(postcard::to_allocvec(&self.0).unwrap_or_default());
        out
    }

    /// Parses a token's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<CausalContext, ContextError> {
        let (&format, body) = bytes.split_first().ok_or(ContextError::Empty)?;
        if format != CONTEXT_FORMAT {
            return Err(ContextError::UnsupportedFormat(format));
        }
        let (vector, rest): (VersionVector, _) =
            postcard::take_from_bytes(body).map_err(|_| ContextError::Malformed)?;
        if !rest.is_empty() || !vector.is_canonical() {
            return Err(ContextError::Malformed);
        }
        Ok(CausalContext(vector))
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
