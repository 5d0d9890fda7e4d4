//! Where a node keeps a store's records in the engine: in the space `records/STORE`, each under
//! its key's [token](Token::of) (16 bytes, big-endian) followed by the key, so that records sit
//! in ring order and anti-entropy reads the keys of a token range as one range read (Cassandra
//! orders its tables by token for the same reason).
//!
//! Layout 1 (before anti-entropy) kept records in the space `STORE` under their bare keys.
//! [`migrate`] moves such records into layout 2 when a node starts: page by page, each record
//! written to its new place before its old one is removed, so a migration cut short by a crash
//! goes on where it stopped at the next start. No store name contains `/`, so neither space
//! can be a store's of the other layout.

use quickv_core::store::StoreName;
use quickv_core::token::Token;

use super::{Engine, StorageError};

/// Bytes of the token in front of each key.
pub const TOKEN_BYTES: usize = 16;

/// Records moved per engine scan during a migration.
const MIGRATION_PAGE: usize = 1024;

/// The space holding `store`'s records.
pub fn space(store: &StoreName) -> String {
    format!("records/{store}")
}

/// The engine key of `key`'s record: its token, then the key.
pub fn record_key(key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(TOKEN_BYTES + key.len());
    bytes.extend_from_slice(&Token::of(key).0.to_be_bytes());
    bytes.extend_from_slice(key);
    bytes
}

/// The first engine key at or after `token`.
pub fn token_start(token: Token) -> [u8; TOKEN_BYTES] {
    token.0.to_be_bytes()
}

/// The key of an engine key and its token, if the token in front is the key's (a damaged or
/// foreign entry gives `None`).
pub fn split(engine_key: &[u8]) -> Option<(Token, &[u8])> {
    let (token, key) = engine_key.split_at_checked(TOKEN_BYTES)?;
    let token = Token(u128::from_be_bytes(token.try_into().ok()?));
    (Token::of(key) == token).then_some((token, key))
}

/// The token an engine key's first bytes spell (zero-padded when shorter), whether or not it
/// is the key's: where a scan that lost track of the keys (a damaged block) is.
pub fn token_at(engine_key: &[u8]) -> Token {
    let mut bytes = [0u8; TOKEN_BYTES];
    let len = engine_key.len().min(TOKEN_BYTES);
    bytes[..len].copy_from_slice(&engine_key[..len]);
    Token(u128::from_be_bytes(bytes))
}

/// Moves `store`'s records of layout 1 (the space named as the store, bare keys) into layout 2;
/// returns how many were moved. Records move byte for byte: one that fails its checks keeps
/// failing them in its new place (and is reported when read), nothing is lost.
pub fn migrate(engine: &dyn Engine, store: &StoreName) -> Result<u64, StorageError> {
    let (old, new) = (store.as_str(), space(store));
    let mut moved = 0u64;
    loop {
        let mut page: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        engine.scan(old, &[], &mut |key, value| {
            page.push((key.to_vec(), value.to_vec()));
            page.len() < MIGRATION_PAGE
        })?;
        if page.is_empty() {
            return Ok(moved);
        }
        for (key, value) in &page {
            engine.put(&new, &record_key(key), value)?;
            engine.remove(old, key)?;
            moved += 1;
        }
    }
}

/// Deletes both layouts' spaces of a dropped store.
pub fn drop_store(engine: &dyn Engine, store: &StoreName) -> Result<(), StorageError> {
    engine.drop_space(&space(store))?;
    engine.drop_space(store.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;

    /// Engine keys sort by token, split back into their keys, and refuse a wrong token.
    #[test]
    fn record_keys_sort_by_token_and_split_back() {
        let keys: Vec<Vec<u8>> = (0..100u32).map(|i| format!("key-{i}").into_bytes()).collect();
        let mut engine_keys: Vec<Vec<u8>> = keys.iter().map(|k| record_key(k)).collect();
        engine_keys.sort();
        let tokens: Vec<Token> = engine_keys.iter().map(|e| split(e).unwrap().0).collect();
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "ring order");
        for key in &keys {
            assert_eq!(split(&record_key(key)).map(|(_, k)| k), Some(&key[..]));
        }
        let mut wrong = record_key(b"a");
        wrong[0] ^= 1;
        assert_eq!(split(&wrong), None);
        assert_eq!(split(b"short"), None);
        assert!(token_start(Token::of(b"a"))[..] <= record_key(b"a")[..]);
    }

    /// Layout-1 records move to layout 2 with their bytes, and a second migration (after one
    /// cut short, or none needed) moves nothing more.
    #[test]
    fn migration_moves_every_record_once() {
        let engine = MemoryEngine::new();
        let store = StoreName::default_store();
        for i in 0..2500u32 {
            let key = format!("k{i}").into_bytes();
            engine.put("default", &key, &[i as u8]).unwrap();
        }
        // A migration cut short: one record already in its new place, still in its old one.
        engine.put(&space(&store), &record_key(b"k7"), &[7]).unwrap();
        assert_eq!(migrate(&engine, &store).unwrap(), 2500);
        assert_eq!(migrate(&engine, &store).unwrap(), 0);
        let mut old = 0;
        engine
            .scan("default", &[], &mut |_, _| {
                old += 1;
                true
            })
            .unwrap();
        assert_eq!(old, 0);
        for i in 0..2500u32 {
            let key = format!("k{i}").into_bytes();
            assert_eq!(engine.get(&space(&store), &record_key(&key)).unwrap(), Some(vec![i as u8]));
        }
    }
}
