//! The storage steps a node asks its driver to run, and what they give back.

use alloc::string::String;
use alloc::vec::Vec;

use super::Hint;
use crate::cluster::ClusterView;
use crate::store::StoreName;
use crate::token::TokenRange;
use crate::version::KeyRecord;

/// Names one storage step, to match its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoId(pub u64);

/// A storage step for the driver to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Io {
    /// Read the stored state of `key` in `store`: answer [`IoOutput::Loaded`], or
    /// [`IoOutput::Damaged`] if a record is stored but fails its checks.
    Load {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
    },
    /// Store `state` as the record of `key`, durably (per the engine's sync policy) before
    /// answering [`IoOutput::Done`].
    Store {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// The new record.
        state: KeyRecord,
        /// A hint to store with it, as durably and before answering: the record is held for
        /// another node (see [`Hint`]).
        hint: Option<Hint>,
    },
    /// Remove the record of `key` in `store` (a collected tombstone, a fallback's copy handed
    /// back), and save `counter_floor` for this incarnation (see
    /// [`NodeConfig::counter_floor`](super::NodeConfig::counter_floor)): the floor first, both
    /// durably (per the engine's sync policy) before answering [`IoOutput::Done`]. At the next
    /// start in the same incarnation the driver hands the saved floor back in the config.
    Remove {
        /// The store.
        store: StoreName,
        /// The key.
        key: Vec<u8>,
        /// The node's counter floor, to save.
        counter_floor: u64,
    },
    /// Delete every record of `store`, a dropped store, then answer [`IoOutput::Done`]. Emitted
    /// once a drop is in the view, and again at every start (deleting nothing is no error).
    DropData {
        /// The dropped store.
        store: StoreName,
    },
    /// Remove this hint (by target, store and key) from storage, then answer [`IoOutput::Done`].
    DropHint(Hint),
    /// Read every hint stored, then answer [`IoOutput::Hints`]. Emitted once, at start.
    LoadHints,
    /// Make what only the storage's journal holds durable without it (the server's engine
    /// flushes its memtables into table files; an engine without a journal does nothing), then
    /// answer [`IoOutput::Done`]. Emitted every half tombstone grace while tombstones are
    /// collected, one at a time, so that a journal lost later cannot bring back a value whose
    /// tombstone was collected (see [`tombstones`](super::tombstones)).
    Checkpoint,
    /// Replace the saved cluster view with this one, durably, then answer [`IoOutput::Done`].
    /// Views are emitted in order; a driver that runs them concurrently must still leave the
    /// last one emitted on disk.
    SaveView(ClusterView),
    /// Read the records of `store` whose [token](crate::token::Token::of) falls in one of
    /// `ranges` (sorted and disjoint: see [`TokenRange::find`](crate::token::TokenRange::find)),
    /// in the storage's order, from position `from` on (empty: the beginning; else a `next` an
    /// earlier scan gave, which only the storage reads), examining at most `limit` records, and
    /// answer [`IoOutput::Scanned`]. A storage may examine records outside the ranges too (the
    /// machine keeps only those in them); the server's keeps records in token order, so a scan
    /// reads just the ranges. Anti-entropy's scans: to build its Merkle trees at start, and to
    /// list the keys of the tree leaves that differ from a peer's.
    Scan {
        /// The store.
        store: StoreName,
        /// The token ranges wanted.
        ranges: Vec<TokenRange>,
        /// Where to go on from (empty: the beginning).
        from: Vec<u8>,
        /// The most records to examine.
        limit: usize,
    },
}

/// What a storage step gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoOutput {
    /// The record read by [`Io::Load`] (`None`: the key is not stored).
    Loaded(Option<KeyRecord>),
    /// [`Io::Load`] found a record that fails its checks (a checksum mismatch, a body that does
    /// not decode): it is not data. The node serves the key from its other replicas and
    /// rebuilds the record from them (see [`Event::DamagedRecord`](super::Event::DamagedRecord)).
    Damaged(String),
    /// The write asked for is done.
    Done,
    /// The hints read by [`Io::LoadHints`].
    Hints(Vec<Hint>),
    /// What an [`Io::Scan`] found.
    Scanned {
        /// The records found, with their keys.
        records: Vec<(Vec<u8>, KeyRecord)>,
        /// Where the next scan goes on from, or `None`: the ranges are done.
        next: Option<Vec<u8>>,
        /// Keys in the ranges whose records fail their checks (not returned as records).
        damaged: Vec<Vec<u8>>,
        /// Token ranges where storage could read nothing, not even which keys it holds (a
        /// damaged block of a table file): records there may be missing from `records` and
        /// `damaged` alike. The node has its peers' copies brought in (see
        /// [`Event::DamagedRange`](super::Event::DamagedRange)).
        unreadable: Vec<crate::token::TokenRange>,
    },
}

/// Whose storage step a step is, to route its result.
#[derive(Clone, Debug)]
pub(super) enum IoOwner {
    /// A replica step of this key.
    Key(StoreName, Vec<u8>),
    /// A save of the view.
    View,
    /// The load of the hints.
    Hints,
    /// An anti-entropy scan (see [`super::anti_entropy`]).
    Scan(u64),
    /// A checkpoint (see [`super::tombstones`]).
    Checkpoint,
    /// Nobody waits for it.
    Nobody,
}

/// A storage step that failed (an I/O error, a corrupt record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoError(pub String);
