//! What a replica keeps for one key: the state it shares with the other replicas, and the ids of
//! the latest writes it minted there.

use alloc::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{ApplyError, Dot, Siblings, Write, WriteId};
use crate::identity::NodeId;
use crate::store::ConflictPolicy;

/// A replica's record of one key.
///
/// `siblings` is the state replicas exchange and merge. `minted` is this replica's alone (never
/// sent, never merged): the ids of the last [`KeyRecord::REMEMBERED`] writes it minted for the
/// key, with their dots, so that a write sent again (a retry after an answer was lost, a late
/// duplicate) is recognised even after a later write superseded its version, instead of coming
/// back as a new version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key's state.
    pub siblings: Siblings,
    minted: VecDeque<(WriteId, Dot)>,
}

impl KeyRecord {
    /// How many minted write ids a record remembers per key.
    pub const REMEMBERED: usize = 32;

    /// A record of `siblings` that remembers no mint.
    pub fn new(siblings: Siblings) -> KeyRecord {
        KeyRecord { siblings, minted: VecDeque::new() }
    }

    /// Applies a write with this replica (`actor`) minting it (see [`Siblings::apply`]), unless
    /// it is a write already minted here: then nothing changes and the dot it got is returned.
    pub fn apply(&mut self, actor: &NodeId, write: &Write, policy: ConflictPolicy) -> Result<Dot, ApplyError> {
        self.apply_above(actor, write, policy, 0)
    }

    /// [`apply`](Self::apply) with a counter above `floor` (see [`Siblings::apply_above`]).
    pub fn apply_above(
        &mut self,
        actor: &NodeId,
        write: &Write,
        policy: ConflictPolicy,
        floor: u64,
    ) -> Result<Dot, ApplyError> {
        if let Some(dot) = self.applied(write.id) {
            return Ok(dot);
        }
        let dot = self.siblings.apply_above(actor, write, policy, floor)?;
        if !write.id.is_none() && !self.minted.iter().any(|(id, _)| *id == write.id) {
            self.minted.push_back((write.id, dot.clone()));
            while self.minted.len() > Self::REMEMBERED {
                self.minted.pop_front();
            }
        }
        Ok(dot)
    }

    /// Merges another replica's state of the key ([`Siblings::merge`]).
    pub fn merge(&mut self, other: &Siblings, policy: ConflictPolicy) {
        self.siblings.merge(other, policy);
    }

    /// Whether the record remembers write `id` as minted here.
    pub fn minted(&self, id: WriteId) -> bool {
        !id.is_none() && self.minted.iter().any(|(m, _)| *m == id)
    }

    /// The dot write `id` got, if the record shows it applied: minted here (the mint log), or a
    /// version of it is in the state (minted anywhere, and not superseded yet).
    pub fn applied(&self, id: WriteId) -> Option<Dot> {
        if id.is_none() {
            return None;
        }
        let minted = self.minted.iter().find(|(m, _)| *m == id).map(|(_, dot)| dot.clone());
        minted.or_else(|| self.siblings.versions().iter().find(|v| v.write == id).map(|v| v.dot.clone()))
    }
}
