//! The node machine's storage steps, run on the engine: a key's state is one record
//! ([`record`]) in the store's space.

use quickv_core::node::{IoError, IoOutput};
use quickv_core::store::StoreName;
use quickv_core::version::KeyRecord;

use crate::storage::{Engine, StorageError, record};

/// Reads the stored state of `key`; a record that fails its checksum is an error, never data.
pub(crate) fn load(engine: &dyn Engine, store: &StoreName, key: &[u8]) -> Result<IoOutput, IoError> {
    let space = store.as_str();
    let loaded = match engine.get(space, key).map_err(failed)? {
        Some(bytes) => Some(record::decode(space, key, &bytes).map_err(failed)?),
        None => None,
    };
    Ok(IoOutput::Loaded(loaded))
}

/// Stores `state` as the record of `key`, durably per the engine's sync policy.
pub(crate) fn store(
    engine: &dyn Engine,
    store: &StoreName,
    key: &[u8],
    state: &KeyRecord,
) -> Result<IoOutput, IoError> {
    engine.put(store.as_str(), key, &record::encode(key, state)).map_err(failed)?;
    Ok(IoOutput::Done)
}

/// Deletes everything stored for a dropped store.
pub(crate) fn drop_store(engine: &dyn Engine, store: &StoreName) -> Result<IoOutput, IoError> {
    engine.drop_space(store.as_str()).map_err(failed)?;
    Ok(IoOutput::Done)
}

fn failed(e: StorageError) -> IoError {
    IoError(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;
    use quickv_core::identity::NodeId;
    use quickv_core::store::ConflictPolicy;
    use quickv_core::version::{CausalContext, Write, WriteId};

    fn state() -> KeyRecord {
        let mut state = KeyRecord::default();
        let write = Write::put(b"x".to_vec(), CausalContext::empty(), 1).with_id(WriteId(5));
        state.apply(&NodeId::new("a").unwrap(), &write, ConflictPolicy::Siblings).unwrap();
        state
    }

    #[test]
    fn a_stored_state_loads_back_and_a_missing_key_loads_as_none() {
        let engine = MemoryEngine::new();
        let s = StoreName::default_store();
        assert_eq!(load(&engine, &s, b"k").unwrap(), IoOutput::Loaded(None));
        assert_eq!(store(&engine, &s, b"k", &state()).unwrap(), IoOutput::Done);
        assert_eq!(load(&engine, &s, b"k").unwrap(), IoOutput::Loaded(Some(state())));
    }

    #[test]
    fn corrupt_records_are_reported_not_returned() {
        let engine = MemoryEngine::new();
        let s = StoreName::default_store();
        store(&engine, &s, b"k", &state()).unwrap();
        let mut bytes = engine.get("default", b"k").unwrap().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        engine.put("default", b"k", &bytes).unwrap();
        let err = load(&engine, &s, b"k").unwrap_err();
        assert!(err.0.contains("corrupt record"), "{err:?}");
    }
}
