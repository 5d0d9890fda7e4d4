//! Sealing contexts: the cluster secret nodes MAC context parts with, and the check of a context
//! a write brings back.

use core::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{CausalContext, ContextError, ContextPart, Seal, Siblings, VersionVector};
use crate::store::StoreName;

/// Domain separation: a seal is never valid as a MAC of anything else made with the same key.
const DOMAIN: &[u8] = b"quickv context seal v1\0";

/// The cluster secret nodes seal contexts with (32 bytes). Nodes only: a caller holding it could
/// forge contexts. Its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ContextKey([u8; ContextKey::LEN]);

impl ContextKey {
    /// Its length in bytes.
    pub const LEN: usize = 32;

    /// The key with these bytes (drawn from a cryptographic RNG by whoever creates the cluster).
    pub fn new(bytes: [u8; ContextKey::LEN]) -> ContextKey {
        ContextKey(bytes)
    }

    /// `state` of `key` in `store` as a node answers it: with the seal a caller's context made of
    /// it needs (see [`SealedState::context`]).
    pub fn seal(&self, store: &StoreName, key: &[u8], state: Siblings) -> SealedState {
        let seal = self.seal_of(store, key, state.history(), state.latest());
        SealedState { siblings: state, seal }
    }

    /// Seals one context part: `history` and `latest` for `key` in `store`.
    pub fn seal_part(&self, store: &StoreName, key: &[u8], history: VersionVector, latest: u64) -> ContextPart {
        let seal = self.seal_of(store, key, &history, latest);
        ContextPart::new(history, latest, seal)
    }

    fn seal_of(&self, store: &StoreName, key: &[u8], history: &VersionVector, latest: u64) -> Seal {
        let mac = self.mac(store, key, history, latest).finalize().into_bytes();
        let mut seal = [0u8; 16];
        seal.copy_from_slice(&mac[..16]);
        Seal(seal)
    }

    /// Checks that every part of `context` was sealed by a node of this cluster for `key` in
    /// `store`. Constant time in the seal bytes.
    pub fn check(&self, store: &StoreName, key: &[u8], context: &CausalContext) -> Result<(), ContextError> {
        for part in context.parts() {
            self.mac(store, key, part.history(), part.latest())
                .verify_truncated_left(&part.seal().0)
                .map_err(|_| ContextError::NotSealed)?;
        }
        Ok(())
    }

    fn mac(&self, store: &StoreName, key: &[u8], history: &VersionVector, latest: u64) -> Hmac<Sha256> {
        // HMAC pads a key shorter than the hash's block (64 bytes) with zeros: the padded key
        // is the same key, and a fixed-size one cannot be refused.
        let mut block = [0u8; 64];
        block[..ContextKey::LEN].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as Mac>::new(&block.into());
        mac.update(DOMAIN);
        let field = |mac: &mut Hmac<Sha256>, bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_le_bytes());
            mac.update(bytes);
        };
        field(&mut mac, store.as_str().as_bytes());
        field(&mut mac, key);
        mac.update(&(history.len() as u64).to_le_bytes());
        for (actor, counter) in history.iter() {
            field(&mut mac, actor.as_str().as_bytes());
            mac.update(&counter.to_le_bytes());
        }
        mac.update(&latest.to_le_bytes());
        mac
    }
}

impl fmt::Debug for ContextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContextKey(..)")
    }
}

/// A replica's state of a key as a node answers it: the state and the seal over its history,
/// from which the caller's context is made ([`context`](Self::context)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedState {
    /// The key's state.
    pub siblings: Siblings,
    /// The node's seal over the state's history and newest timestamp for this key.
    pub seal: Seal,
}

impl SealedState {
    /// A state from a format without seals: its context is refused by nodes until read again.
    pub fn unsealed(siblings: Siblings) -> SealedState {
        SealedState { siblings, seal: Seal::NONE }
    }

    /// The context of a caller who read this state.
    pub fn context(&self) -> CausalContext {
        CausalContext::from_parts([ContextPart::new(
            self.siblings.history().clone(),
            self.siblings.latest(),
            self.seal,
        )])
    }
}
