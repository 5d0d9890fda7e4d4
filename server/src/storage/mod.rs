//! Storage engines: where a node keeps its replicas.
//!
//! Every engine implements the object-safe [`Engine`] trait: named spaces (one per store) of
//! byte keys and byte values, with a write acknowledged only once it is as durable as the
//! [`SyncPolicy`] says. Two engines ship: [`MemoryEngine`] (tests, caches) and
//! [`DurableEngine`], built on fjall, the default (see `docs/storage.md` for why fjall and the
//! measurements). One conformance suite (`storage/tests.rs`) runs against both.
//!
//! Engines store opaque bytes; [`record`] adds the versioned, checksummed record format the
//! node writes, so that corruption is reported rather than returned as data whatever the engine.

mod durable;
pub mod layout;
mod memory;
pub mod quarantine;
pub mod record;
mod table_damage;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

pub use durable::DurableEngine;
pub use memory::MemoryEngine;
pub use quarantine::JournalLoss;

/// When a write counts as done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// The write is on stable storage (fsync) before it is acknowledged: it survives a crash
    /// of the process and of the machine. Concurrent writes share one fsync (group commit).
    /// The default.
    #[default]
    Always,
    /// The write is handed to the operating system before it is acknowledged: it survives a
    /// crash of the process (SIGKILL) but not a power loss or kernel crash.
    Os,
}

impl FromStr for SyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<SyncPolicy, String> {
        match s {
            "always" => Ok(SyncPolicy::Always),
            "os" => Ok(SyncPolicy::Os),
            other => Err(format!("unknown sync policy {other:?}: expected always or os")),
        }
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncPolicy::Always => "always",
            SyncPolicy::Os => "os",
        })
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The space name is not usable (1 to 255 bytes).
    #[error("invalid space name {0:?}")]
    InvalidSpace(String),
    /// The underlying engine failed (I/O, a failed fsync, a damaged file).
    #[error("storage engine failed: {0}")]
    Engine(String),
    /// Another process holds the data folder open.
    #[error(
        "the data folder {} is in use by another process (a quickv-node still running there?): stop that process, or give this node a folder of its own (--dir)",
        .0.display()
    )]
    Locked(std::path::PathBuf),
    /// A record failed its checksum or could not be decoded.
    #[error("corrupt record for key {key:?} in {space}: {reason}")]
    Corrupt {
        /// The space.
        space: String,
        /// The key, lossily as text.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// What [`Engine::scan_past_damage`] meets, in key order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanItem<'a> {
    /// An entry: its key and value.
    Entry(&'a [u8], &'a [u8]),
    /// Entries that could not be read at all (a damaged block of a table file): every key
    /// after `after` (`None`: from the scan's start) and before `until` (`None`: to the end of
    /// the space) may have been lost; the scan goes on at `until`.
    Unreadable {
        /// The last key read before the damage.
        after: Option<&'a [u8]>,
        /// The first key read after it.
        until: Option<&'a [u8]>,
        /// What the engine said.
        reason: &'a str,
    },
}

/// One change of a batch written with [`Engine::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Store `value` under `key` in `space`, replacing any value.
    Put {
        /// The space.
        space: String,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` from `space`.
    Remove {
        /// The space.
        space: String,
        /// The key.
        key: Vec<u8>,
    },
}

/// A storage engine: spaces of byte keys and byte values. Object safe; shared across threads.
pub trait Engine: Send + Sync + fmt::Debug {
    /// The value of `key` in `space`, if any. A space never written reads as empty.
    fn get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Stores `value` under `key`, replacing any value; durable per the engine's
    /// [`SyncPolicy`] when it returns.
    fn put(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError>;

    /// Removes `key`; durable per the engine's [`SyncPolicy`] when it returns.
    fn remove(&self, space: &str, key: &[u8]) -> Result<(), StorageError>;

    /// Applies `changes` in order as one write, durable per the engine's [`SyncPolicy`] when
    /// it returns: the node's committer gathers the writes that wait into one batch, so that
    /// one sync serves them all (group commit). The durable engine writes the batch to its
    /// journal at once (all of it or none after a crash) and syncs once; the default applies
    /// the changes one by one.
    fn apply(&self, changes: &[Change]) -> Result<(), StorageError> {
        for change in changes {
            match change {
                Change::Put { space, key, value } => self.put(space, key, value)?,
                Change::Remove { space, key } => self.remove(space, key)?,
            }
        }
        Ok(())
    }

    /// Calls `visit` on each entry of `space` whose key is `from` or after it, in key order,
    /// until it returns `false` (`from` empty: every entry).
    fn scan(&self, space: &str, from: &[u8], visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StorageError>;

    /// [`scan`](Self::scan), going on past what cannot be read: a damaged part of a file
    /// (whose keys are unknown) is reported as [`ScanItem::Unreadable`] and the scan goes on
    /// after it, where [`scan`](Self::scan) fails. The default never meets damage it can skip.
    fn scan_past_damage(
        &self,
        space: &str,
        from: &[u8],
        visit: &mut dyn FnMut(ScanItem<'_>) -> bool,
    ) -> Result<(), StorageError> {
        self.scan(space, from, &mut |key, value| visit(ScanItem::Entry(key, value)))
    }

    /// Moves what only the journal holds into table files (the durable engine), so that losing
    /// a journal file later (damaged, moved aside) cannot take it back; a no-op for an engine
    /// without a journal. Nodes call it every half tombstone grace: a collected tombstone's
    /// value must not come back from an older table (see `docs/storage.md`).
    fn checkpoint(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Makes every write so far durable on stable storage, whatever the policy.
    fn flush(&self) -> Result<(), StorageError>;

    /// Deletes `space` and everything in it, durably; a space never written is no error. The
    /// space reads as empty afterwards (and a later write starts it afresh).
    fn drop_space(&self, space: &str) -> Result<(), StorageError>;

    /// The bytes the engine holds, for operators (`quickv_storage_bytes`): on disk for the
    /// durable engine (journal and tables, so it lags removals until compaction), keys and
    /// values in memory for the memory engine. Cheap enough to ask every second.
    fn size(&self) -> Result<u64, StorageError>;
}

/// Which engine a node runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// [`DurableEngine`] (fjall), the default.
    #[default]
    Durable,
    /// [`MemoryEngine`]: nothing survives a restart.
    Memory,
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<EngineKind, String> {
        match s {
            "durable" => Ok(EngineKind::Durable),
            "memory" => Ok(EngineKind::Memory),
            other => Err(format!("unknown engine {other:?}: expected durable or memory")),
        }
    }
}

/// An engine just opened.
#[derive(Debug)]
pub struct Opened {
    /// The engine.
    pub engine: Box<dyn Engine>,
    /// What the durable engine's journal lost as it opened (damaged files moved aside, files
    /// cut short): if anything, the start is one after a loss.
    pub journal_loss: JournalLoss,
}

/// Opens an engine of `kind` in `dir` (the durable engine keeps its files in `dir/data`).
pub fn open(kind: EngineKind, dir: &Path, sync: SyncPolicy) -> Result<Opened, StorageError> {
    Ok(match kind {
        EngineKind::Durable => {
            let engine = DurableEngine::open(&dir.join("data"), sync)?;
            let journal_loss = engine.journal_loss().clone();
            Opened { engine: Box::new(engine), journal_loss }
        }
        EngineKind::Memory => Opened { engine: Box::new(MemoryEngine::new()), journal_loss: JournalLoss::default() },
    })
}

fn check_space(space: &str) -> Result<(), StorageError> {
    if space.is_empty() || space.len() > 255 {
        return Err(StorageError::InvalidSpace(space.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
