//! Replica operations: what a node does with the keys it holds.
//!
//! - **get** returns the stored state of a key;
//! - **mint** applies a caller's write with this node as the actor (minting the write's dot),
//!   superseding exactly the versions the write's context has seen;
//! - **merge** folds another replica's state in: siblings stay siblings, dominated versions go.
//!
//! A delete is a write of a tombstone. Read-modify-write steps on one key are serialised by a
//! striped lock, so two concurrent writes to a key never lose each other; storage calls run on
//! the blocking pool.

use std::sync::Arc;

use quickv_core::identity::NodeId;
use quickv_core::store::{ConflictPolicy, StoreName};
use quickv_core::token::Token;
use quickv_core::version::{ApplyError, Siblings, Write};

use crate::storage::{Engine, StorageError, record};

const STRIPES: usize = 256;

/// Why a replica operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// Storage failed or a stored record is corrupt.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The write's context is invalid here (for example it claims versions this node never
    /// minted).
    #[error("invalid causal context: {0}")]
    Context(#[from] ApplyError),
}

/// The keys one node holds, over one storage engine.
#[derive(Debug)]
pub struct Replica {
    id: NodeId,
    engine: Arc<dyn Engine>,
    locks: Vec<tokio::sync::Mutex<()>>,
}

impl Replica {
    /// A replica for node `id` over `engine`.
    pub fn new(id: NodeId, engine: Arc<dyn Engine>) -> Replica {
        Replica { id, engine, locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect() }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// The stored state of `key`, if any.
    pub async fn get(&self, store: &StoreName, key: &[u8]) -> Result<Option<Siblings>, ReplicaError> {
        Ok(self.load(store, key).await?)
    }

    /// Applies a caller's write with this node as actor; returns the state after it.
    pub async fn mint(
        &self,
        store: &StoreName,
        key: &[u8],
        write: &Write,
        policy: ConflictPolicy,
    ) -> Result<Siblings, ReplicaError> {
        let _guard = self.lock(key).await;
        let mut state = self.load(store, key).await?.unwrap_or_default();
        state.apply(&self.id, write, policy)?;
        self.save(store, key, &state).await?;
        Ok(state)
    }

    /// Merges another replica's state of `key` into this one's; returns the state after it.
    pub async fn merge(
        &self,
        store: &StoreName,
        key: &[u8],
        incoming: &Siblings,
        policy: ConflictPolicy,
    ) -> Result<Siblings, ReplicaError> {
        let _guard = self.lock(key).await;
        let current = self.load(store, key).await?;
        let mut state = current.clone().unwrap_or_default();
        state.merge(incoming, policy);
        if current.as_ref() != Some(&state) {
            self.save(store, key, &state).await?;
        }
        Ok(state)
    }

    async fn lock(&self, key: &[u8]) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = (Token::of(key).0 % STRIPES as u128) as usize;
        self.locks[stripe].lock().await
    }

    async fn load(&self, store: &StoreName, key: &[u8]) -> Result<Option<Siblings>, StorageError> {
        let (engine, space, key) = (self.engine.clone(), store.as_str().to_owned(), key.to_vec());
        blocking(move || match engine.get(&space, &key)? {
            Some(bytes) => record::decode(&space, &key, &bytes).map(Some),
            None => Ok(None),
        })
        .await
    }

    async fn save(&self, store: &StoreName, key: &[u8], state: &Siblings) -> Result<(), StorageError> {
        let bytes = record::encode(key, state);
        let (engine, space, key) = (self.engine.clone(), store.as_str().to_owned(), key.to_vec());
        blocking(move || engine.put(&space, &key, &bytes)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StorageError::Engine(format!("storage task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;
    use quickv_core::version::CausalContext;

    fn replica() -> Replica {
        Replica::new(NodeId::new("a").unwrap(), Arc::new(MemoryEngine::new()))
    }

    #[tokio::test]
    async fn blind_writes_become_siblings_and_a_context_write_replaces_them() {
        let r = replica();
        let s = StoreName::default_store();
        let policy = ConflictPolicy::Siblings;
        r.mint(&s, b"k", &Write::put(b"x".to_vec(), CausalContext::empty(), 1), policy).await.unwrap();
        let both = r.mint(&s, b"k", &Write::put(b"y".to_vec(), CausalContext::empty(), 2), policy).await.unwrap();
        assert_eq!(both.values().count(), 2);
        let one = r.mint(&s, b"k", &Write::put(b"z".to_vec(), both.context(), 3), policy).await.unwrap();
        assert_eq!(one.values().map(|v| v.as_ref().to_vec()).collect::<Vec<_>>(), vec![b"z".to_vec()]);
        assert_eq!(r.get(&s, b"k").await.unwrap(), Some(one.clone()));
        let gone = r.mint(&s, b"k", &Write::delete(one.context(), 4), policy).await.unwrap();
        assert!(gone.is_absent());
    }

    #[tokio::test]
    async fn merge_keeps_concurrent_versions_and_drops_dominated_ones() {
        let (a, b) = (replica(), Replica::new(NodeId::new("b").unwrap(), Arc::new(MemoryEngine::new())));
        let s = StoreName::default_store();
        let policy = ConflictPolicy::Siblings;
        let from_a = a.mint(&s, b"k", &Write::put(b"a".to_vec(), CausalContext::empty(), 1), policy).await.unwrap();
        let from_b = b.mint(&s, b"k", &Write::put(b"b".to_vec(), CausalContext::empty(), 1), policy).await.unwrap();
        let merged = a.merge(&s, b"k", &from_b, policy).await.unwrap();
        assert_eq!(merged.values().count(), 2);
        // Merging an older state changes nothing.
        assert_eq!(a.merge(&s, b"k", &from_a, policy).await.unwrap(), merged);
    }

    #[tokio::test]
    async fn corrupt_records_are_reported_not_returned() {
        let r = replica();
        let s = StoreName::default_store();
        r.mint(&s, b"k", &Write::put(b"x".to_vec(), CausalContext::empty(), 1), ConflictPolicy::Siblings)
            .await
            .unwrap();
        let mut bytes = r.engine().get("default", b"k").unwrap().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        r.engine().put("default", b"k", &bytes).unwrap();
        let err = r.get(&s, b"k").await.unwrap_err();
        assert!(err.to_string().contains("corrupt record"), "{err}");
    }
}
