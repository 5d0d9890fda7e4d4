//! The memory engine: a sorted map per space. Nothing survives a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use super::{Engine, StorageError, check_space};

type Space = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keeps everything in memory.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    spaces: RwLock<HashMap<String, Space>>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> MemoryEngine {
        MemoryEngine::default()
    }
}

impl Engine for MemoryEngine {
    fn get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        check_space(space)?;
        let spaces = self.spaces.read().unwrap_or_else(|p| p.into_inner());
        Ok(spaces.get(space).and_then(|s| s.get(key)).cloned())
    }

    fn put(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        check_space(space)?;
        let mut spaces = self.spaces.write().unwrap_or_else(|p| p.into_inner());
        spaces.entry(space.to_owned()).or_default().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&self, space: &str, key: &[u8]) -> Result<(), StorageError> {
        check_space(space)?;
        let mut spaces = self.spaces.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = spaces.get_mut(space) {
            s.remove(key);
        }
        Ok(())
    }

    fn scan(&self, space: &str, from: &[u8], visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StorageError> {
        check_space(space)?;
        let spaces = self.spaces.read().unwrap_or_else(|p| p.into_inner());
        for (k, v) in spaces.get(space).into_iter().flat_map(|m| m.range(from.to_vec()..)) {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn drop_space(&self, space: &str) -> Result<(), StorageError> {
        check_space(space)?;
        self.spaces.write().unwrap_or_else(|p| p.into_inner()).remove(space);
        Ok(())
    }

    fn size(&self) -> Result<u64, StorageError> {
        let spaces = self.spaces.read().unwrap_or_else(|p| p.into_inner());
        Ok(spaces.values().flat_map(|s| s.iter()).map(|(k, v)| (k.len() + v.len()) as u64).sum())
    }
}
