//! The node machine's storage steps, run on the engine: a key's state is one record
//! ([`record`]) in the store's space of records, under its token and key ([`layout`]); the hints a node holds for other nodes live in a space of
//! their own ([`HINTS_SPACE`]: key the postcard encoding of target, store and key; value a
//! version byte, the hint's creation time in milliseconds and its record's size in bytes, each
//! 8 bytes little-endian).

use quickv_core::identity::NodeId;
use quickv_core::node::{Hint, IoError, IoOutput};
use quickv_core::store::StoreName;
use quickv_core::token::TokenRange;
use quickv_core::version::KeyRecord;

use crate::storage::{Change, Engine, ScanItem, StorageError, layout, record};

/// Reads the stored state of `key`; a record that fails its checks is reported damaged, never
/// returned as data.
pub(crate) fn load(engine: &dyn Engine, store: &StoreName, key: &[u8]) -> Result<IoOutput, IoError> {
    let space = layout::space(store);
    let bytes = match engine.get(&space, &layout::record_key(key)) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(IoOutput::Loaded(None)),
        // The engine could not read it (a damaged table block).
        Err(damage @ StorageError::Corrupt { .. }) => return Ok(IoOutput::Damaged(damage.to_string())),
        Err(other) => return Err(failed(other)),
    };
    match record::decode(&space, key, &bytes) {
        Ok(record) => Ok(IoOutput::Loaded(Some(record))),
        Err(damage @ StorageError::Corrupt { .. }) => Ok(IoOutput::Damaged(damage.to_string())),
        Err(other) => Err(failed(other)),
    }
}

/// The space of hints: no store name starts with `_`.
pub(crate) const HINTS_SPACE: &str = "_hints";

/// The version byte of a stored hint: 2 since hints carry their record's size (version 1 had
/// the creation time only; its hints load with size 0).
const HINT_VERSION: u8 = 2;

/// Stores `state` as the record of `key`, and `hint` with it, durably per the engine's sync
/// policy, before answering.
#[cfg(test)]
pub(crate) fn store(
    engine: &dyn Engine,
    store: &StoreName,
    key: &[u8],
    state: &KeyRecord,
    hint: Option<&Hint>,
) -> Result<IoOutput, IoError> {
    engine.apply(&store_changes(store, key, state, hint)).map_err(failed)?;
    Ok(IoOutput::Done)
}

/// What storing `state` as the record of `key`, with `hint`, writes.
pub(crate) fn store_changes(store: &StoreName, key: &[u8], state: &KeyRecord, hint: Option<&Hint>) -> Vec<Change> {
    let mut changes = vec![Change::Put {
        space: layout::space(store),
        key: layout::record_key(key),
        value: record::encode(key, state),
    }];
    if let Some(hint) = hint {
        let mut value = vec![HINT_VERSION];
        value.extend_from_slice(&hint.created_ms.to_le_bytes());
        value.extend_from_slice(&hint.bytes.to_le_bytes());
        changes.push(Change::Put { space: HINTS_SPACE.into(), key: hint_key(hint), value });
    }
    changes
}

/// The space of the node's own small records: no store name starts with `_`.
pub(crate) const NODE_SPACE: &str = "_node";

/// The key of the counter floor in [`NODE_SPACE`]: a version byte, then the incarnation it is
/// for and the floor, each 8 bytes little-endian.
const FLOOR_KEY: &[u8] = b"counter_floor";

/// The version byte of the stored counter floor.
const FLOOR_VERSION: u8 = 1;

/// Saves `counter_floor` for `incarnation` (unless a higher one is saved already), then
/// removes the record of `key` (a collected tombstone, a fallback's copy handed back), both
/// durably per the engine's sync policy, in one write. The node's committer runs removals one
/// batch at a time (see `committer`): the floor only rises.
#[cfg(test)]
pub(crate) fn remove(
    engine: &dyn Engine,
    store: &StoreName,
    key: &[u8],
    incarnation: u64,
    counter_floor: u64,
) -> Result<IoOutput, IoError> {
    let mut changes: Vec<Change> =
        floor_change(engine, incarnation, counter_floor).map_err(failed)?.into_iter().collect();
    changes.push(remove_change(store, key));
    engine.apply(&changes).map_err(failed)?;
    Ok(IoOutput::Done)
}

/// What removing the record of `key` writes.
pub(crate) fn remove_change(store: &StoreName, key: &[u8]) -> Change {
    Change::Remove { space: layout::space(store), key: layout::record_key(key) }
}

/// The write that saves `counter_floor` for `incarnation`, unless a floor as high is saved
/// already.
pub(crate) fn floor_change(
    engine: &dyn Engine,
    incarnation: u64,
    counter_floor: u64,
) -> Result<Option<Change>, StorageError> {
    if counter_floor <= self::counter_floor(engine, incarnation)? {
        return Ok(None);
    }
    let mut value = vec![FLOOR_VERSION];
    value.extend_from_slice(&incarnation.to_le_bytes());
    value.extend_from_slice(&counter_floor.to_le_bytes());
    Ok(Some(Change::Put { space: NODE_SPACE.into(), key: FLOOR_KEY.to_vec(), value }))
}

/// The counter floor saved for `incarnation` (0 if none was, or it was saved in another
/// incarnation: a new incarnation's actor has minted nothing yet). A saved floor that does not
/// decode is an error: starting from 0 could mint a dot twice.
pub(crate) fn counter_floor(engine: &dyn Engine, incarnation: u64) -> Result<u64, StorageError> {
    let Some(bytes) = engine.get(NODE_SPACE, FLOOR_KEY)? else { return Ok(0) };
    let corrupt = |reason: &str| StorageError::Corrupt {
        space: NODE_SPACE.into(),
        key: String::from_utf8_lossy(FLOOR_KEY).into_owned(),
        reason: reason.into(),
    };
    let [version, body @ ..] = bytes.as_slice() else { return Err(corrupt("empty")) };
    if *version != FLOOR_VERSION {
        return Err(corrupt(&format!("unknown format version {version}")));
    }
    let (Some(saved_in), Some(floor)) = (body.get(..8), body.get(8..16)) else { return Err(corrupt("truncated")) };
    let saved_in = u64::from_le_bytes(saved_in.try_into().map_err(|_| corrupt("truncated"))?);
    let floor = u64::from_le_bytes(floor.try_into().map_err(|_| corrupt("truncated"))?);
    Ok(if saved_in == incarnation { floor } else { 0 })
}

/// Removes a hint.
#[cfg(test)]
pub(crate) fn drop_hint(engine: &dyn Engine, hint: &Hint) -> Result<IoOutput, IoError> {
    engine.apply(&[drop_hint_change(hint)]).map_err(failed)?;
    Ok(IoOutput::Done)
}

/// What removing a hint writes.
pub(crate) fn drop_hint_change(hint: &Hint) -> Change {
    Change::Remove { space: HINTS_SPACE.into(), key: hint_key(hint) }
}

/// Moves what only the journal holds into table files (`Engine::checkpoint`): the node asks
/// every half tombstone grace, so that a journal lost later cannot bring back a value whose
/// tombstone was collected (see `quickv_core::node` tombstones).
pub(crate) fn checkpoint(engine: &dyn Engine) -> Result<IoOutput, IoError> {
    engine.checkpoint().map_err(failed)?;
    Ok(IoOutput::Done)
}

/// Reads every hint stored. An entry that does not decode, or cannot be read at all, is skipped
/// and reported: its key is brought level by anti-entropy instead.
pub(crate) fn load_hints(engine: &dyn Engine) -> Result<IoOutput, IoError> {
    let mut hints = Vec::new();
    let mut bad = 0usize;
    engine
        .scan_past_damage(HINTS_SPACE, &[], &mut |item| {
            match item {
                ScanItem::Entry(key, value) => match decode_hint(key, value) {
                    Some(hint) => hints.push(hint),
                    None => bad += 1,
                },
                ScanItem::Unreadable { reason, .. } => {
                    tracing::error!("some stored hints cannot be read ({reason}) and were skipped");
                }
            }
            true
        })
        .map_err(failed)?;
    if bad > 0 {
        tracing::warn!("{bad} stored hints did not decode and were skipped");
    }
    Ok(IoOutput::Hints(hints))
}

fn hint_key(hint: &Hint) -> Vec<u8> {
    quickv_core::encoding::to_vec(&(&hint.target, &hint.store, &hint.key))
}

fn decode_hint(key: &[u8], value: &[u8]) -> Option<Hint> {
    let (target, store, key) = postcard::from_bytes::<(NodeId, StoreName, Vec<u8>)>(key).ok()?;
    let (created_ms, bytes) = match value.split_first()? {
        (1, created) => (u64::from_le_bytes(created.try_into().ok()?), 0),
        (2, rest) if rest.len() == 16 => {
            let (created, bytes) = rest.split_at(8);
            (u64::from_le_bytes(created.try_into().ok()?), u64::from_le_bytes(bytes.try_into().ok()?))
        }
        _ => return None,
    };
    Some(Hint { target, store, key, created_ms, bytes })
}

/// Examines up to `limit` records of `store` in `ranges` (sorted and disjoint), in token order,
/// from engine key `from` on (see [`Io::Scan`](quickv_core::node::Io::Scan)): one range read per
/// range. A record that fails its checks is skipped and reported, not returned: anti-entropy
/// then finds its key missing here and brings it back from a replica. A part of storage that
/// cannot be read at all (a damaged table block) is skipped and reported as the tokens it may
/// have held (`unreadable`).
pub(crate) fn scan(
    engine: &dyn Engine,
    store: &StoreName,
    ranges: &[TokenRange],
    from: &[u8],
    limit: usize,
) -> Result<IoOutput, IoError> {
    let space = layout::space(store);
    let (mut records, mut damaged, mut unreadable) = (Vec::new(), Vec::new(), Vec::new());
    let (mut examined, mut next) = (0usize, None);
    let mut bad = 0usize;
    for range in ranges {
        if layout::token_start(range.last()).as_slice() < &from[..from.len().min(layout::TOKEN_BYTES)] {
            continue; // wholly before where this scan goes on from
        }
        let start = layout::token_start(range.first());
        let start = if from > start.as_slice() { from } else { start.as_slice() };
        engine
            .scan_past_damage(&space, start, &mut |item| {
                let (engine_key, value) = match item {
                    ScanItem::Entry(engine_key, value) => (engine_key, value),
                    ScanItem::Unreadable { after, until, reason } => {
                        let first = after.map_or(range.first(), layout::token_at).max(range.first());
                        let last = until.map_or(range.last(), layout::token_at).min(range.last());
                        tracing::error!(
                            %store,
                            "a part of storage cannot be read ({reason}): records with tokens {first:?} to {last:?} \
                             may be lost here; the other replicas' copies are brought in"
                        );
                        unreadable.extend(TokenRange::new(first, last));
                        return until.is_some_and(|until| layout::token_at(until) <= range.last());
                    }
                };
                let Some((token, key)) = layout::split(engine_key) else {
                    bad += 1;
                    return true;
                };
                if token > range.last() {
                    return false;
                }
                if examined == limit {
                    next = Some(engine_key.to_vec());
                    return false;
                }
                examined += 1;
                match record::decode(&space, key, value) {
                    Ok(record) => records.push((key.to_vec(), record)),
                    Err(_) => damaged.push(key.to_vec()),
                }
                true
            })
            .map_err(failed)?;
        if next.is_some() {
            break;
        }
    }
    if bad > 0 {
        tracing::warn!("{bad} entries of store {store} have keys of no record layout and were skipped by a scan");
    }
    Ok(IoOutput::Scanned { records, next, damaged, unreadable })
}

/// Deletes everything stored for a dropped store.
pub(crate) fn drop_store(engine: &dyn Engine, store: &StoreName) -> Result<IoOutput, IoError> {
    layout::drop_store(engine, store).map_err(failed)?;
    Ok(IoOutput::Done)
}

pub(crate) fn failed(e: StorageError) -> IoError {
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
        assert_eq!(store(&engine, &s, b"k", &state(), None).unwrap(), IoOutput::Done);
        assert_eq!(load(&engine, &s, b"k").unwrap(), IoOutput::Loaded(Some(state())));
    }

    /// Hints are stored with their record, load back, and are removed one by one; an entry that
    /// does not decode is skipped, not fatal.
    #[test]
    fn hints_store_load_and_drop() {
        let engine = MemoryEngine::new();
        let s = StoreName::default_store();
        assert_eq!(load_hints(&engine).unwrap(), IoOutput::Hints(vec![]));
        let hint = |k: &[u8]| Hint {
            target: NodeId::new("n2").unwrap(),
            store: s.clone(),
            key: k.to_vec(),
            created_ms: 77,
            bytes: 1000 + k.len() as u64,
        };
        store(&engine, &s, b"a", &state(), Some(&hint(b"a"))).unwrap();
        store(&engine, &s, b"b", &state(), Some(&hint(b"b"))).unwrap();
        engine.put(HINTS_SPACE, b"garbage", &[9, 9]).unwrap();
        let IoOutput::Hints(mut hints) = load_hints(&engine).unwrap() else { panic!() };
        hints.sort();
        assert_eq!(hints, vec![hint(b"a"), hint(b"b")]);
        assert_eq!(load(&engine, &s, b"a").unwrap(), IoOutput::Loaded(Some(state())), "the record is stored too");
        drop_hint(&engine, &hint(b"a")).unwrap();
        assert_eq!(load_hints(&engine).unwrap(), IoOutput::Hints(vec![hint(b"b")]));
        // A hint stored by a node before hints carried sizes (version 1) loads with size 0.
        let old = Hint { bytes: 0, ..hint(b"old") };
        engine.put(HINTS_SPACE, &hint_key(&old), &[&[1u8][..], &77u64.to_le_bytes()].concat()).unwrap();
        let IoOutput::Hints(mut hints) = load_hints(&engine).unwrap() else { panic!() };
        hints.sort();
        assert_eq!(hints, vec![hint(b"b"), old]);
    }

    /// A scan returns the records of its ranges and no others, in pages that go on where the
    /// last stopped, examining only the records in the ranges.
    #[test]
    fn a_scan_reads_its_ranges_in_pages() {
        use quickv_core::token::Token;
        let engine = MemoryEngine::new();
        let s = StoreName::default_store();
        let keys: Vec<Vec<u8>> = (0..500u32).map(|i| format!("k{i}").into_bytes()).collect();
        for key in &keys {
            store(&engine, &s, key, &state(), None).unwrap();
        }
        let quarter = u128::MAX / 4;
        let ranges = vec![
            TokenRange::new(Token(quarter / 2), Token(quarter)).unwrap(),
            TokenRange::new(Token(2 * quarter), Token(3 * quarter)).unwrap(),
        ];
        let wanted: std::collections::BTreeSet<Vec<u8>> =
            keys.iter().filter(|k| TokenRange::find(&ranges, Token::of(k))).cloned().collect();
        let (mut found, mut from, mut pages) = (std::collections::BTreeSet::new(), Vec::new(), 0);
        loop {
            let IoOutput::Scanned { records, next, .. } = scan(&engine, &s, &ranges, &from, 50).unwrap() else {
                panic!()
            };
            assert!(records.len() <= 50);
            pages += 1;
            for (key, record) in records {
                assert_eq!(record, state());
                assert!(found.insert(key), "each record once");
            }
            match next {
                Some(next) => from = next,
                None => break,
            }
        }
        assert_eq!(found, wanted);
        assert_eq!(pages, wanted.len() / 50 + 1, "only the ranges' records were examined");
    }

    /// A removal saves the counter floor for its incarnation; the floor only rises, is read
    /// back in that incarnation only, and a damaged one is an error, never 0.
    #[test]
    fn removals_save_a_rising_counter_floor_per_incarnation() {
        let engine = MemoryEngine::new();
        let s = StoreName::default_store();
        assert_eq!(counter_floor(&engine, 3).unwrap(), 0);
        for key in [&b"a"[..], b"b"] {
            store(&engine, &s, key, &state(), None).unwrap();
        }
        assert_eq!(remove(&engine, &s, b"a", 3, 7).unwrap(), IoOutput::Done);
        assert_eq!(load(&engine, &s, b"a").unwrap(), IoOutput::Loaded(None));
        remove(&engine, &s, b"b", 3, 5).unwrap();
        assert_eq!(load(&engine, &s, b"b").unwrap(), IoOutput::Loaded(None));
        assert_eq!(counter_floor(&engine, 3).unwrap(), 7, "a lower floor saved later does not win");
        assert_eq!(counter_floor(&engine, 4).unwrap(), 0, "another incarnation starts from 0");
        engine.put(NODE_SPACE, FLOOR_KEY, &[FLOOR_VERSION, 1, 2]).unwrap();
        assert!(matches!(counter_floor(&engine, 3), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn corrupt_records_are_reported_not_returned() {
        let engine = MemoryEngine::new();
        let s = StoreName::default_store();
        store(&engine, &s, b"k", &state(), None).unwrap();
        let (space, k) = (layout::space(&s), layout::record_key(b"k"));
        let mut bytes = engine.get(&space, &k).unwrap().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        engine.put(&space, &k, &bytes).unwrap();
        let IoOutput::Damaged(reason) = load(&engine, &s, b"k").unwrap() else { panic!("damage not reported") };
        assert!(reason.contains("corrupt record"), "{reason}");
    }
}
