//! The conformance suite every engine passes, and the durable engine's crash test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::*;

fn memory(_: &Path) -> Box<dyn Engine> {
    Box::new(MemoryEngine::new())
}

fn durable(dir: &Path) -> Box<dyn Engine> {
    Box::new(DurableEngine::open(dir, SyncPolicy::Always).unwrap())
}

/// How many entries a scan of `space` visits.
fn entries(engine: &dyn Engine, space: &str) -> usize {
    let mut count = 0;
    engine
        .scan(space, &[], &mut |_, _| {
            count += 1;
            true
        })
        .unwrap();
    count
}

/// The behaviour every engine must have.
fn conformance(open: fn(&Path) -> Box<dyn Engine>) {
    let dir = tempfile::tempdir().unwrap();
    let engine: Arc<dyn Engine> = Arc::from(open(dir.path()));

    // A dropped space reads as empty, others keep their data; dropping is idempotent.
    engine.put("gone", b"a", b"1").unwrap();
    engine.put("gone", b"b", b"2").unwrap();
    engine.put("kept", b"a", b"3").unwrap();
    engine.drop_space("gone").unwrap();
    engine.drop_space("gone").unwrap();
    engine.drop_space("never-written").unwrap();
    assert_eq!(engine.get("gone", b"a").unwrap(), None);
    assert_eq!(entries(&*engine, "gone"), 0);
    assert_eq!(engine.get("kept", b"a").unwrap().as_deref(), Some(&b"3"[..]));
    engine.put("gone", b"c", b"4").unwrap();
    assert_eq!(engine.get("gone", b"c").unwrap().as_deref(), Some(&b"4"[..]), "written afresh");
    engine.drop_space("gone").unwrap();
    engine.remove("kept", b"a").unwrap();

    // A batch applies its changes in order, across spaces; removing from a space never
    // written is no error; an empty batch changes nothing; a bad space refuses the batch.
    let put = |space: &str, key: &[u8], value: &[u8]| Change::Put {
        space: space.into(),
        key: key.to_vec(),
        value: value.to_vec(),
    };
    let remove = |space: &str, key: &[u8]| Change::Remove { space: space.into(), key: key.to_vec() };
    engine
        .apply(&[
            put("b1", b"x", b"1"),
            put("b2", b"y", b"2"),
            put("b1", b"x", b"3"),
            put("b1", b"z", b"4"),
            remove("b1", b"z"),
            remove("never-written", b"k"),
        ])
        .unwrap();
    assert_eq!(engine.get("b1", b"x").unwrap().as_deref(), Some(&b"3"[..]), "the later change wins");
    assert_eq!(engine.get("b2", b"y").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(engine.get("b1", b"z").unwrap(), None);
    engine.apply(&[]).unwrap();
    assert!(matches!(engine.apply(&[put("", b"k", b"v")]), Err(StorageError::InvalidSpace(_))));
    engine.apply(&[remove("b1", b"x"), remove("b2", b"y")]).unwrap();
    assert_eq!((entries(&*engine, "b1"), entries(&*engine, "b2")), (0, 0));

    // Absent keys and spaces read as empty.
    assert_eq!(engine.get("s", b"k").unwrap(), None);
    engine.remove("never", b"k").unwrap();
    assert_eq!(entries(&*engine, "never"), 0);

    // The longest key the limits allow (3.6: the documented maximum works).
    let longest = vec![b'k'; quickv_core::store::Limits::default().max_key];
    engine.put("s", &longest, b"long").unwrap();
    assert_eq!(engine.get("s", &longest).unwrap().as_deref(), Some(&b"long"[..]));
    engine.remove("s", &longest).unwrap();

    // Put, overwrite, remove.
    engine.put("s", b"k", b"one").unwrap();
    assert_eq!(engine.get("s", b"k").unwrap().as_deref(), Some(&b"one"[..]));
    engine.put("s", b"k", b"two").unwrap();
    assert_eq!(engine.get("s", b"k").unwrap().as_deref(), Some(&b"two"[..]));
    engine.remove("s", b"k").unwrap();
    assert_eq!(engine.get("s", b"k").unwrap(), None);

    // Spaces are separate; empty values and binary keys are fine.
    engine.put("a", b"\x00\xff", b"").unwrap();
    engine.put("b", b"\x00\xff", b"b").unwrap();
    assert_eq!(engine.get("a", b"\x00\xff").unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(engine.get("b", b"\x00\xff").unwrap().as_deref(), Some(&b"b"[..]));

    // Scans are in key order and stop when asked.
    for k in [b"c", b"a", b"b", b"d"] {
        engine.put("scan", k, k).unwrap();
    }
    let mut keys = Vec::new();
    engine
        .scan("scan", &[], &mut |k, v| {
            assert_eq!(k, v);
            keys.push(k.to_vec());
            keys.len() < 3
        })
        .unwrap();
    assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    // A scan may start at a key (inclusive), present or not.
    for (from, expected) in
        [(&b"b"[..], vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]), (b"bb", vec![b"c".to_vec(), b"d".to_vec()])]
    {
        let mut keys = Vec::new();
        engine
            .scan("scan", from, &mut |k, _| {
                keys.push(k.to_vec());
                true
            })
            .unwrap();
        assert_eq!(keys, expected);
    }

    // Bad space names are refused and change nothing.
    assert!(matches!(engine.put("", b"k", b"v"), Err(StorageError::InvalidSpace(_))));
    assert!(matches!(engine.get(&"x".repeat(256), b"k"), Err(StorageError::InvalidSpace(_))));

    // Large values.
    let big = vec![7u8; 4 << 20];
    engine.put("s", b"big", &big).unwrap();
    assert_eq!(engine.get("s", b"big").unwrap().map(|v| v.len()), Some(big.len()));

    // Concurrent writers.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    engine.put("c", format!("{t}-{i}").as_bytes(), &[t as u8; 100]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut count = 0;
    engine
        .scan("c", &[], &mut |_, _| {
            count += 1;
            true
        })
        .unwrap();
    assert_eq!(count, 800);
    engine.flush().unwrap();

    // The size covers what was written (4 MiB and 800 values of 100 bytes at least).
    let size = engine.size().unwrap();
    assert!(size >= (4 << 20) + 80_000, "{size} bytes");
}

#[test]
fn memory_engine_conforms() {
    conformance(memory);
}

#[test]
fn durable_engine_conforms() {
    conformance(durable);
}

#[test]
fn durable_engine_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = durable(dir.path());
        engine.put("s", b"k", b"v").unwrap();
        engine.put("s", b"gone", b"v").unwrap();
        engine.remove("s", b"gone").unwrap();
    }
    let engine = durable(dir.path());
    assert_eq!(engine.get("s", b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(engine.get("s", b"gone").unwrap(), None);
}

/// Issue 9, 4.1: a data folder another engine holds open is refused with an error that says
/// what to do, and the engine holding it goes on unharmed.
#[test]
fn a_data_folder_in_use_is_refused_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let engine = durable(dir.path());
    engine.put("s", b"k", b"v").unwrap();
    let Err(e) = DurableEngine::open(dir.path(), SyncPolicy::Always) else { panic!("opened twice") };
    assert!(matches!(e, StorageError::Locked(_)), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("in use by another process") && message.contains("--dir"), "{message}");
    assert_eq!(engine.get("s", b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Runs itself again as a child process (`QUICKV_CRASH_DIR` set) that writes keys under the
/// default policy and prints each once `put` has returned; SIGKILLs it after 2,000
/// acknowledgements and checks every acknowledged key after reopening.
#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(dir) = std::env::var("QUICKV_CRASH_DIR") {
        let engine = DurableEngine::open(Path::new(&dir), SyncPolicy::default()).unwrap();
        for i in 0u64.. {
            engine.put("s", &i.to_be_bytes(), &[1u8; 1024]).unwrap();
            println!("acked {i}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "storage::tests::acknowledged_writes_survive_sigkill", "--nocapture", "--test-threads=1"])
        .env("QUICKV_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last = None;
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            last = Some(n.parse::<u64>().unwrap());
            if last >= Some(2000) {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let last = last.expect("the child acknowledged writes");
    let engine = DurableEngine::open(dir.path(), SyncPolicy::default()).unwrap();
    for i in 0..=last {
        assert!(engine.get("s", &i.to_be_bytes()).unwrap().is_some(), "acknowledged write {i} of {last} was lost");
    }
}

/// A durable engine in `data` holding `flushed` in a table and 200 writes (512 bytes of 7s each)
/// in its journal only; returns the largest journal file.
fn engine_with_a_journal(data: &Path) -> std::path::PathBuf {
    let engine = DurableEngine::open(data, SyncPolicy::Always).unwrap();
    engine.put("s", b"flushed", b"kept").unwrap();
    // Into a table: the journal that held it is done with.
    let ks = engine.db_for_tests().keyspace("s", fjall::KeyspaceCreateOptions::default).unwrap();
    ks.rotate_memtable_and_wait().unwrap();
    for i in 0u32..200 {
        engine.put("s", &i.to_be_bytes(), &[7u8; 512]).unwrap();
    }
    drop(engine);
    let journals = std::fs::read_dir(data).unwrap().map(|e| e.unwrap().path());
    let journals: Vec<_> = journals.filter(|p| p.extension().is_some_and(|e| e == "jnl")).collect();
    journals.into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap()
}

/// Flips a byte of a value (of 512 sevens) a third of the way into `journal`, so that the
/// batch holding it fails its checksum; returns the file's bytes as they now are.
fn flip_a_value_byte(journal: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(journal).unwrap();
    let runs: Vec<usize> =
        bytes.windows(512).enumerate().filter(|(_, w)| w.iter().all(|b| *b == 7)).map(|(i, _)| i).collect();
    let at = runs[runs.len() / 3] + 100;
    bytes[at] ^= 0x5a;
    std::fs::write(journal, &bytes).unwrap();
    bytes
}

/// Issue 8, 3.4: a flipped byte inside fjall's journal (not its torn tail) stopped the node
/// from starting (`JournalRecovery(ChecksumMismatch)`), with no way out but wiping it. The
/// damaged journal file is moved aside and the engine opens; what it held is lost here (the
/// node starts a new incarnation and the other replicas bring it back), the tables are kept.
#[test]
fn a_damaged_journal_is_moved_aside_and_the_engine_opens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let journal = engine_with_a_journal(&data);
    let bytes = flip_a_value_byte(&journal);
    // Teeth: fjall alone refuses to open.
    match fjall::Database::builder(&data).open() {
        Err(fjall::Error::JournalRecovery(_)) => {}
        other => panic!("expected fjall to refuse the damaged journal, got {:?}", other.map(|_| "an open database")),
    }

    let engine = DurableEngine::open(&data, SyncPolicy::Always).unwrap();
    let loss = engine.journal_loss().clone();
    assert_eq!(loss.quarantined.len(), 1, "{loss:?}");
    let moved = &loss.quarantined[0];
    assert!(moved.starts_with(super::quarantine::folder(&data)) && moved.exists(), "{moved:?}");
    assert_eq!(std::fs::read(moved).unwrap(), bytes, "the damaged file is kept, as it was");
    assert!(std::fs::read(&journal).map_or(true, |b| b != bytes), "the damaged file left the engine's folder");
    // The engine was rebuilt from what it held; the old folder is kept, whole.
    let kept = std::fs::read_dir(super::quarantine::folder(&data)).unwrap().map(|e| e.unwrap().path());
    assert_eq!(kept.filter(|p| p.to_string_lossy().ends_with("-replaced") && p.join("version").exists()).count(), 1);
    assert_eq!(engine.get("s", b"flushed").unwrap().as_deref(), Some(&b"kept"[..]), "tables are kept");
    // The engine works, and opens again with nothing more lost.
    engine.put("s", b"after", b"v").unwrap();
    drop(engine);
    let engine = DurableEngine::open(&data, SyncPolicy::Always).unwrap();
    assert!(engine.journal_loss().is_empty(), "{:?}", engine.journal_loss());
    assert_eq!(engine.get("s", b"after").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Issue 8, 3.4: a damaged entry header makes fjall drop the rest of the journal file without
/// an error (it takes it for a torn tail): after a clean stop that lost acknowledged writes in
/// silence, and the node went on in the same incarnation. The cut is now reported.
#[test]
fn a_journal_fjall_cuts_short_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let journal = engine_with_a_journal(&data);
    let mut bytes = std::fs::read(&journal).unwrap();
    let data_end = bytes.iter().rposition(|b| *b != 0).unwrap() as u64 + 1;
    // The first entry's tag: no entry after it decodes.
    bytes[0] = 0xee;
    std::fs::write(&journal, &bytes).unwrap();

    let engine = DurableEngine::open(&data, SyncPolicy::Always).unwrap();
    let loss = engine.journal_loss().clone();
    assert!(loss.quarantined.is_empty(), "{loss:?}");
    assert_eq!(loss.truncated.len(), 1, "{loss:?}");
    let (file, before, after) = &loss.truncated[0];
    assert_eq!((file, *before), (&journal, data_end));
    assert!(*after < data_end, "{loss:?}");
    assert_eq!(engine.get("s", &0u32.to_be_bytes()).unwrap(), None, "fjall dropped the journal's writes");
    assert_eq!(engine.get("s", b"flushed").unwrap().as_deref(), Some(&b"kept"[..]));
    // A clean open after a clean stop loses nothing.
    drop(engine);
    assert!(DurableEngine::open(&data, SyncPolicy::Always).unwrap().journal_loss().is_empty());
}

/// What a key reads as after its journal is lost: `old` in a table, then a tombstone and the
/// tombstone's removal (its collection), with a checkpoint between the two if `checkpoint`,
/// then a journal file damaged so that it is moved aside.
fn after_a_lost_journal(dir: &Path, checkpoint: bool) -> Option<Vec<u8>> {
    let data = dir.join("data");
    let engine = DurableEngine::open(&data, SyncPolicy::Always).unwrap();
    engine.put("s", b"k", b"old").unwrap();
    engine.flush_memtables().unwrap();
    engine.put("s", b"k", b"tombstone").unwrap();
    if checkpoint {
        engine.checkpoint().unwrap();
    }
    engine.remove("s", b"k").unwrap();
    for i in 0u32..50 {
        engine.put("s", &i.to_be_bytes(), &[7u8; 512]).unwrap();
    }
    drop(engine);
    let journals = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path());
    let journal = journals
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len());
    flip_a_value_byte(&journal.expect("a journal file"));
    let engine = DurableEngine::open(&data, SyncPolicy::Always).unwrap();
    assert!(!engine.journal_loss().is_empty(), "the journal was lost");
    engine.get("s", b"k").unwrap()
}

/// Issue 8, 3.3 with 3.4: a collected tombstone came back when the journal file holding both
/// the tombstone and its removal was lost (damaged, moved aside): the table beneath still held
/// the value the delete removed, which reappeared on that node and would spread by
/// anti-entropy. A checkpoint (memtables into tables) between storing a tombstone and
/// collecting it keeps the tombstone in a table: a lost journal then brings back at most the
/// tombstone, never the value. Nodes checkpoint every half `tombstone_grace`, and collection
/// waits at least a grace after every node held the tombstone.
#[test]
fn a_collected_tombstone_does_not_bring_back_the_value_when_the_journal_is_lost() {
    let without = tempfile::tempdir().unwrap();
    assert_eq!(after_a_lost_journal(without.path(), false).as_deref(), Some(&b"old"[..]), "the hazard");
    let with = tempfile::tempdir().unwrap();
    let read = after_a_lost_journal(with.path(), true);
    assert_ne!(read.as_deref(), Some(&b"old"[..]), "the deleted value came back");
    assert_eq!(read.as_deref(), Some(&b"tombstone"[..]));
}

/// Issue 8, 3.4: a flipped byte in a table file (not the journal). fjall opens the database and
/// reads every key outside the damaged block; a read of a key in it is reported as a damaged
/// record (not an engine failure), and a scan goes on past the block, reporting where it could
/// not read; a key written again reads as written.
#[test]
fn a_damaged_table_block_is_reported_and_scans_go_on_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = |i: u32| format!("key{i:06}").into_bytes();
    {
        let engine = DurableEngine::open(&data, SyncPolicy::Os).unwrap();
        for i in 0..20_000u32 {
            engine.put("s", &key(i), &[(i % 251) as u8; 100]).unwrap();
        }
        let ks = engine.db_for_tests().keyspace("s", fjall::KeyspaceCreateOptions::default).unwrap();
        ks.rotate_memtable_and_wait().unwrap();
    }
    // The largest table file: a byte a third of the way in.
    let table = files_under(&data)
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("tables")))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a table file");
    let mut bytes = std::fs::read(&table).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&table, &bytes).unwrap();

    let engine = DurableEngine::open(&data, SyncPolicy::Os).unwrap();
    let mut lost = Vec::new();
    for i in 0..20_000u32 {
        match engine.get("s", &key(i)) {
            Ok(value) => assert_eq!(value, Some(vec![(i % 251) as u8; 100]), "key {i}"),
            Err(StorageError::Corrupt { reason, .. }) => {
                assert!(reason.contains("Checksum"), "{reason}");
                lost.push(i);
            }
            Err(other) => panic!("key {i}: {other}"),
        }
    }
    assert!(!lost.is_empty() && lost.len() < 200, "one block's keys are lost: {}", lost.len());
    // A strict scan stops at the block; one that goes past it sees every other key, and says
    // where it could not read.
    assert!(engine.scan("s", b"", &mut |_, _| true).is_err());
    let (mut seen, mut gaps) = (Vec::new(), Vec::new());
    engine
        .scan_past_damage("s", b"", &mut |item| {
            match item {
                ScanItem::Entry(k, _) => seen.push(k.to_vec()),
                ScanItem::Unreadable { after, until, .. } => {
                    gaps.push((after.map(<[u8]>::to_vec), until.map(<[u8]>::to_vec)))
                }
            }
            true
        })
        .unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let (after, until) = gaps[0].clone();
    let (after, until) = (after.unwrap(), until.unwrap());
    for i in &lost {
        assert!(after < key(*i) && key(*i) < until, "lost key {i} lies in the gap");
    }
    // Every key outside the gap is seen, once, in order.
    let outside: Vec<Vec<u8>> = (0..20_000).map(key).filter(|k| *k <= after || *k >= until).collect();
    assert_eq!(seen, outside);
    assert!(seen.len() + 2 * lost.len() + 400 >= 20_000, "the gap is at most about twice the damage");
    // Written again, a lost key reads as written.
    engine.put("s", &key(lost[0]), b"again").unwrap();
    assert_eq!(engine.get("s", &key(lost[0])).unwrap().as_deref(), Some(&b"again"[..]));
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
