//! Opening fjall past a damaged journal.
//!
//! fjall recovers a torn tail of its journal by itself (the last batch, cut short by a crash, is
//! dropped), but a batch that fails its checksum anywhere else stops the open
//! (`JournalRecovery(ChecksumMismatch)`): a flipped byte on disk would keep the node down for
//! good. Instead, the damaged journal file is moved out of the engine's folder into
//! `<data>-quarantine/` (kept for inspection, never read again) and the engine opens without it.
//!
//! fjall keeps its own bookkeeping (which keyspace id is which keyspace) in the same journal, so
//! a database opened without one of its journal files is not trusted as it is: a keyspace whose
//! record was in that file opens from its folder, but its writes would be skipped by the next
//! recovery (`a_damaged_journal_is_moved_aside_and_the_engine_opens` lost a write made after the
//! open that way). So the engine is **rebuilt**: every record it still holds is copied into a
//! fresh database in `<data>-rebuild`, which then replaces `<data>` (the old folder goes to the
//! quarantine folder, whole). A rebuild interrupted before the swap is started again; one
//! interrupted between the two renames is finished at the next open.
//!
//! What that file held is lost on this node: writes not yet flushed to tables, of any age. The
//! caller must treat the start as one after a loss (a new incarnation, so no dot this node minted
//! is minted again; resent writes answered `Indeterminate`), and the node's other replicas bring
//! the lost keys back (anti-entropy, hints, read repair). Each journal file is tried alone
//! first, newest first, so one damaged file costs only itself; if no single file explains the
//! failure, every journal file is moved.
//!
//! fjall also **cuts a journal file short without an error** when an entry does not decode (a
//! damaged tag or length anywhere in the file, not only in a torn tail): everything after it is
//! dropped. fjall creates each journal file 64 MiB long and full of zeros, and trims the zeros
//! off when it recovers the file, so the end of each file's data (its last byte that is not
//! zero) is taken before the open and compared with the file's length after: a cut into the data
//! is reported ([`JournalLoss::truncated`]). After a crash it is usually the torn tail of writes
//! never acknowledged; after a clean stop it can only be damage; either way the start is treated
//! as one after a loss.

use std::path::{Path, PathBuf};

use fjall::Database;

use super::StorageError;

/// The folder damaged journal files are moved to: beside `dir`, named `<dir>-quarantine`.
pub fn folder(dir: &Path) -> PathBuf {
    sibling(dir, "quarantine")
}

fn engine_error(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(format!("{what}: {e}"))
}

/// What opening the durable engine lost of its journal: nothing, after a clean stop of an
/// undamaged node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalLoss {
    /// Damaged journal files moved aside (where they are now).
    pub quarantined: Vec<PathBuf>,
    /// Journal files fjall cut into as it recovered them: the file, where its data ended before
    /// and its length after.
    pub truncated: Vec<(PathBuf, u64, u64)>,
}

impl JournalLoss {
    /// Whether nothing was lost.
    pub fn is_empty(&self) -> bool {
        self.quarantined.is_empty() && self.truncated.is_empty()
    }
}

/// Opens the database in `dir`, moving damaged journal files aside if the journal cannot be
/// recovered; returns it and what the journal lost.
pub fn open(dir: &Path) -> Result<(Database, JournalLoss), StorageError> {
    finish_rebuild(dir)?;
    let mut before = Vec::new();
    for file in journal_files(dir)? {
        let end = data_end(&file).map_err(|e| engine_error(&format!("cannot read {}", file.display()), e))?;
        before.push((file, end));
    }
    let (db, quarantined) = open_moving_damage(dir)?;
    let db = if quarantined.is_empty() { db } else { rebuild(dir, db)? };
    // A file whose data fjall cut into; one gone (moved aside, or removed by a flush after
    // recovery) is not a cut.
    let truncated = before
        .into_iter()
        .filter_map(|(path, end)| {
            let now = std::fs::metadata(&path).ok()?.len();
            (now < end).then_some((path, end, now))
        })
        .collect();
    Ok((db, JournalLoss { quarantined, truncated }))
}

/// Milliseconds since the Unix epoch: what names the files moved to the quarantine folder.
fn stamp() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}-{suffix}"))
}

fn sync_parent(dir: &Path) -> Result<(), StorageError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let sync = std::fs::File::open(parent).and_then(|f| f.sync_all());
    sync.map_err(|e| engine_error(&format!("cannot sync {}", parent.display()), e))
}

/// Copies every record of `db` (opened from `dir`) into a fresh database, which replaces `dir`;
/// the old folder goes to the quarantine folder. Returns the fresh database, opened in `dir`.
fn rebuild(dir: &Path, db: Database) -> Result<Database, StorageError> {
    let fresh_dir = sibling(dir, "rebuild");
    if fresh_dir.exists() {
        std::fs::remove_dir_all(&fresh_dir).map_err(|e| engine_error("cannot clear an old rebuild", e))?;
    }
    {
        let fresh = Database::builder(&fresh_dir).open().map_err(|e| engine_error("cannot create the rebuild", e))?;
        for name in db.list_keyspace_names() {
            let options = fjall::KeyspaceCreateOptions::default;
            let from = db.keyspace(&name, options).map_err(|e| engine_error("cannot open a keyspace", e))?;
            let to = fresh.keyspace(&name, options).map_err(|e| engine_error("cannot create a keyspace", e))?;
            // Every version the tables hold (`iter` reads at the recovered sequence number,
            // which a journal gone may have left below theirs).
            for guard in from.range::<&[u8], _>(..) {
                let (k, v) = guard.into_inner().map_err(|e| engine_error("cannot read a record to rebuild", e))?;
                to.insert(k, v).map_err(|e| engine_error("cannot write the rebuild", e))?;
            }
        }
        fresh.persist(fjall::PersistMode::SyncAll).map_err(|e| engine_error("cannot sync the rebuild", e))?;
    }
    drop(db);
    let stamp = stamp();
    let old = folder(dir).join(format!("{stamp}-replaced"));
    std::fs::rename(dir, &old).map_err(|e| engine_error("cannot move the damaged engine aside", e))?;
    std::fs::rename(&fresh_dir, dir).map_err(|e| engine_error("cannot put the rebuild in place", e))?;
    sync_parent(dir)?;
    Database::builder(dir).open().map_err(|e| engine_error("cannot open the rebuilt engine", e))
}

/// Completes a rebuild stopped between its two renames (`dir` gone, the rebuild complete), and
/// drops one stopped before them (it is made again if needed).
fn finish_rebuild(dir: &Path) -> Result<(), StorageError> {
    let fresh_dir = sibling(dir, "rebuild");
    if !fresh_dir.exists() {
        return Ok(());
    }
    if dir.join("version").exists() {
        std::fs::remove_dir_all(&fresh_dir).map_err(|e| engine_error("cannot clear an old rebuild", e))?;
    } else {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| engine_error("cannot clear an empty engine folder", e))?;
        }
        std::fs::rename(&fresh_dir, dir).map_err(|e| engine_error("cannot put the rebuild in place", e))?;
        sync_parent(dir)?;
    }
    Ok(())
}

/// Where the data of a journal file ends: one past its last byte that is not zero (0 if none).
fn data_end(file: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    const CHUNK: u64 = 1 << 20;
    let mut f = std::fs::File::open(file)?;
    let mut end = f.metadata()?.len();
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(last) = chunk.iter().rposition(|b| *b != 0) {
            return Ok(start + last as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn open_moving_damage(dir: &Path) -> Result<(Database, Vec<PathBuf>), StorageError> {
    let first = match Database::builder(dir).open() {
        Ok(db) => return Ok((db, Vec::new())),
        Err(fjall::Error::JournalRecovery(reason)) => reason,
        Err(fjall::Error::Locked) => return Err(StorageError::Locked(dir.to_path_buf())),
        Err(e) => return Err(engine_error("cannot open the engine", e)),
    };
    let journals = journal_files(dir)?;
    let quarantine = folder(dir);
    std::fs::create_dir_all(&quarantine).map_err(|e| engine_error("cannot create the quarantine folder", e))?;
    let stamp = stamp();
    let moved_to = |file: &Path| {
        let name = file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        quarantine.join(format!("{stamp}-{name}"))
    };
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|e| engine_error(&format!("cannot move {}", from.display()), e))
    };
    // One file at a time, newest first: the first whose absence lets the engine open was damaged.
    for file in journals.iter().rev() {
        let to = moved_to(file);
        rename(file, &to)?;
        match Database::builder(dir).open() {
            Ok(db) => return Ok((db, vec![to])),
            Err(fjall::Error::JournalRecovery(_)) => rename(&to, file)?,
            Err(e) => {
                rename(&to, file)?;
                return Err(engine_error("cannot open the engine", e));
            }
        }
    }
    // More than one damaged file: none is trusted.
    let mut moved = Vec::new();
    for file in &journals {
        let to = moved_to(file);
        rename(file, &to)?;
        moved.push(to);
    }
    let db = Database::builder(dir).open().map_err(|e| {
        engine_error(&format!("the journal is damaged ({first}) and the engine cannot open without it"), e)
    })?;
    Ok((db, moved))
}

/// The engine's journal files (`<id>.jnl` in `dir`), oldest first.
fn journal_files(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| engine_error("cannot list the engine's folder", e))?;
    let mut journals: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| engine_error("cannot list the engine's folder", e))?.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            journals.push((id, path));
        }
    }
    journals.sort();
    Ok(journals.into_iter().map(|(_, path)| path).collect())
}
