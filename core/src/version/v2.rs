//! Writes as encoded before contexts were sealed (wire version 2), to keep decoding them: the
//! context, a bare version vector, reads as one unsealed part, which nodes refuse (the caller
//! reads the key again); a blind write stays a blind write.

use serde::Deserialize;

use super::{CausalContext, Payload, VersionVector, WriteId};

/// A write whose context is a bare version vector.
#[derive(Debug, Deserialize)]
pub struct Write {
    pub(super) id: WriteId,
    pub(super) payload: Payload,
    pub(super) context: VersionVector,
    pub(super) timestamp: u64,
}

impl From<Write> for super::Write {
    fn from(w: Write) -> super::Write {
        let context = if w.context.is_empty() { CausalContext::empty() } else { CausalContext::unsealed(w.context) };
        super::Write { id: w.id, payload: w.payload, context, timestamp: w.timestamp, resent: false }
    }
}
