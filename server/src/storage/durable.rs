//! The durable engine, built on fjall (an LSM tree with a write-ahead journal).
//!
//! Each space is a fjall keyspace. A write is appended to fjall's journal (handed to the
//! operating system) before `put` returns; under [`SyncPolicy::Always`] it is also fsynced, and
//! concurrent writers share fsyncs: each write takes a sequence number after it is journaled,
//! and a writer whose number an fsync already covered returns without one. The node writes
//! through [`Engine::apply`]: one journal write and one fsync for a whole batch of changes,
//! gathered by its committer thread (group commit without a thread per write).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::quarantine::JournalLoss;
use super::table_damage::{first_readable_after, is_damage};
use super::{Change, Engine, ScanItem, StorageError, SyncPolicy, check_space};

/// The default engine: fjall on local disk.
pub struct DurableEngine {
    db: Database,
    spaces: RwLock<HashMap<String, Keyspace>>,
    sync: SyncPolicy,
    /// Writes journaled so far.
    written: AtomicU64,
    /// Writes journaled when the last checkpoint began.
    checkpointed: AtomicU64,
    /// Writes covered by a completed fsync; the lock admits one fsync at a time.
    synced: Mutex<u64>,
    /// What the journal lost when the engine opened (see `quarantine.rs`).
    journal_loss: JournalLoss,
}

impl std::fmt::Debug for DurableEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableEngine").field("sync", &self.sync).finish_non_exhaustive()
    }
}

fn engine_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(e.to_string())
}

impl DurableEngine {
    /// Opens (or creates) the engine's files in `dir`, recovering the journal after a crash. A
    /// journal file that cannot be recovered is moved aside and the engine opens without it:
    /// check [`journal_loss`](Self::journal_loss), and treat the start as one after a loss if
    /// anything was lost.
    pub fn open(dir: &Path, sync: SyncPolicy) -> Result<DurableEngine, StorageError> {
        std::fs::create_dir_all(dir).map_err(engine_error)?;
        let (db, journal_loss) = super::quarantine::open(dir)?;
        Ok(DurableEngine {
            db,
            spaces: RwLock::new(HashMap::new()),
            sync,
            written: AtomicU64::new(0),
            synced: Mutex::new(0),
            checkpointed: AtomicU64::new(0),
            journal_loss,
        })
    }

    /// The database itself, for tests that reach below the engine (forcing a flush).
    #[cfg(test)]
    pub(crate) fn db_for_tests(&self) -> &Database {
        &self.db
    }

    /// Writes every space's memtable into a table file now, and waits for it (fjall otherwise
    /// does so when a memtable or the journal outgrows its bound): what was written so far no
    /// longer depends on the journal. Tests use it to put records into table files. (It calls
    /// fjall's `rotate_memtable_and_wait`, which fjall does not document as public API.)
    pub fn flush_memtables(&self) -> Result<(), StorageError> {
        for name in self.db.list_keyspace_names() {
            let ks = self.db.keyspace(&name, KeyspaceCreateOptions::default).map_err(engine_error)?;
            ks.rotate_memtable_and_wait().map_err(engine_error)?;
        }
        Ok(())
    }

    /// What the journal lost when the engine opened: damaged files moved aside, files fjall cut
    /// short. What they held is lost on this node.
    pub fn journal_loss(&self) -> &JournalLoss {
        &self.journal_loss
    }

    /// The keyspace of `space`; with `create` false, `None` if it was never written.
    fn space(&self, space: &str, create: bool) -> Result<Option<Keyspace>, StorageError> {
        check_space(space)?;
        if let Some(ks) = self.spaces.read().unwrap_or_else(|p| p.into_inner()).get(space) {
            return Ok(Some(ks.clone()));
        }
        if !create && !self.db.keyspace_exists(space) {
            return Ok(None);
        }
        let ks = self.db.keyspace(space, KeyspaceCreateOptions::default).map_err(engine_error)?;
        self.spaces.write().unwrap_or_else(|p| p.into_inner()).insert(space.to_owned(), ks.clone());
        Ok(Some(ks))
    }

    /// Waits until the write numbered `seq` is on stable storage, under the policy.
    fn commit(&self, seq: u64) -> Result<(), StorageError> {
        if self.sync == SyncPolicy::Os {
            return Ok(());
        }
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= seq {
            return Ok(()); // another writer's fsync covered this write
        }
        let target = self.written.load(Ordering::Acquire);
        self.db.persist(PersistMode::SyncAll).map_err(engine_error)?;
        *synced = target;
        Ok(())
    }
}

impl Engine for DurableEngine {
    fn get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(ks) = self.space(space, false)? else { return Ok(None) };
        match ks.get(key) {
            Ok(value) => Ok(value.map(|v| v.to_vec())),
            // A damaged table block: the record is damaged, not the engine.
            Err(e) if is_damage(&e) => Err(StorageError::Corrupt {
                space: space.into(),
                key: String::from_utf8_lossy(key).into_owned(),
                reason: e.to_string(),
            }),
            Err(e) => Err(engine_error(e)),
        }
    }

    fn put(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let Some(ks) = self.space(space, true)? else { return Err(StorageError::InvalidSpace(space.into())) };
        ks.insert(key, value).map_err(engine_error)?;
        let seq = self.written.fetch_add(1, Ordering::AcqRel) + 1;
        self.commit(seq)
    }

    fn remove(&self, space: &str, key: &[u8]) -> Result<(), StorageError> {
        let Some(ks) = self.space(space, false)? else { return Ok(()) };
        ks.remove(key).map_err(engine_error)?;
        let seq = self.written.fetch_add(1, Ordering::AcqRel) + 1;
        self.commit(seq)
    }

    fn apply(&self, changes: &[Change]) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        for change in changes {
            match change {
                Change::Put { space, key, value } => {
                    let Some(ks) = self.space(space, true)? else {
                        return Err(StorageError::InvalidSpace(space.clone()));
                    };
                    batch.insert(&ks, key.as_slice(), value.as_slice());
                }
                Change::Remove { space, key } => {
                    if let Some(ks) = self.space(space, false)? {
                        batch.remove(&ks, key.as_slice());
                    }
                }
            }
        }
        batch.commit().map_err(engine_error)?;
        let seq = self.written.fetch_add(changes.len() as u64, Ordering::AcqRel) + changes.len() as u64;
        self.commit(seq)
    }

    fn scan(&self, space: &str, from: &[u8], visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StorageError> {
        let Some(ks) = self.space(space, false)? else { return Ok(()) };
        for guard in ks.range(from..) {
            let (k, v) = guard.into_inner().map_err(engine_error)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn scan_past_damage(
        &self,
        space: &str,
        from: &[u8],
        visit: &mut dyn FnMut(ScanItem<'_>) -> bool,
    ) -> Result<(), StorageError> {
        let Some(ks) = self.space(space, false)? else { return Ok(()) };
        let mut start = from.to_vec();
        'pieces: loop {
            // The last key read in this piece: the damage lies after it (or after `start`).
            let mut last: Option<Vec<u8>> = None;
            for guard in ks.range(start.as_slice()..) {
                match guard.into_inner() {
                    Ok((k, v)) => {
                        if !visit(ScanItem::Entry(&k, &v)) {
                            return Ok(());
                        }
                        last = Some(k.to_vec());
                    }
                    Err(e) if is_damage(&e) => {
                        let base = last.unwrap_or_else(|| start.clone());
                        // Strictly past `base`: every piece ends further on.
                        let until = first_readable_after(&ks, &base)?;
                        let reason = e.to_string();
                        let after = (!base.is_empty()).then_some(base.as_slice());
                        let item = ScanItem::Unreadable { after, until: until.as_deref(), reason: &reason };
                        match (visit(item), until) {
                            (true, Some(until)) => {
                                start = until;
                                continue 'pieces;
                            }
                            _ => return Ok(()),
                        }
                    }
                    Err(e) => return Err(engine_error(e)),
                }
            }
            return Ok(());
        }
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.persist(PersistMode::SyncAll).map_err(engine_error)
    }

    fn checkpoint(&self) -> Result<(), StorageError> {
        // Nothing written since the last one: nothing only the journal holds.
        let written = self.written.load(Ordering::Acquire);
        if self.checkpointed.swap(written, Ordering::AcqRel) == written {
            return Ok(());
        }
        self.flush_memtables().inspect_err(|_| {
            // Try again next time.
            self.checkpointed.store(0, Ordering::Release);
        })
    }

    fn drop_space(&self, space: &str) -> Result<(), StorageError> {
        let Some(ks) = self.space(space, false)? else { return Ok(()) };
        self.spaces.write().unwrap_or_else(|p| p.into_inner()).remove(space);
        // fjall removes the files once the last handle is gone.
        self.db.delete_keyspace(ks).map_err(engine_error)?;
        self.db.persist(PersistMode::SyncAll).map_err(engine_error)
    }

    fn size(&self) -> Result<u64, StorageError> {
        self.db.disk_space().map_err(engine_error)
    }
}
