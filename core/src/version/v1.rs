//! Versions as encoded before write ids (wire version 1, record version 1), to keep decoding
//! them: a version of that format reads as made by a write with [`WriteId::NONE`].

use alloc::vec::Vec;

use serde::Deserialize;

use super::{Dot, Payload, Sibling, SiblingsError, VersionVector, WriteId};

/// A write without an id, and with an unsealed context (a version vector).
#[derive(Debug, Deserialize)]
pub struct Write {
    payload: Payload,
    context: VersionVector,
    timestamp: u64,
}

impl From<Write> for super::Write {
    fn from(w: Write) -> super::Write {
        super::v2::Write { id: WriteId::NONE, payload: w.payload, context: w.context, timestamp: w.timestamp }.into()
    }
}

#[derive(Debug, Deserialize)]
struct Version {
    dot: Dot,
    timestamp: u64,
    payload: Payload,
}

/// A key's state whose versions carry no write ids.
#[derive(Debug, Deserialize)]
pub struct Siblings {
    history: VersionVector,
    versions: Vec<Version>,
}

impl Siblings {
    /// The state in today's form, checked as [`super::Siblings::validate`] does.
    pub fn into_current(self) -> Result<super::Siblings, SiblingsError> {
        let versions = self
            .versions
            .into_iter()
            .map(|v| Sibling { dot: v.dot, timestamp: v.timestamp, payload: v.payload, write: WriteId::NONE })
            .collect();
        super::Siblings::from_parts(self.history, versions)
    }
}
