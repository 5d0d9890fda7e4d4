//! Issue 8, 3.4: damaged storage is repaired, not fatal.

use std::net::SocketAddr;
use std::time::Duration;

use quickv_client::CausalContext;
use quickv_client::transport::Transport;
use quickv_core::store::StoreName;
use quickv_core::wire::{ErrorKind, Request, Response};
use quickv_server::storage::{DurableEngine, Engine, SyncPolicy, layout};

use crate::support::Cluster;

/// A record whose bytes were flipped on a node's disk (found by the node's start-up scan) is
/// reported, never served as data, rebuilt from the other replicas with no read of the key, and
/// the node keeps serving everything else; its next start is a new incarnation (the lost record
/// may have held dots it minted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_reported_served_elsewhere_and_rebuilt() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    for key in ["cart", "other"] {
        store.put(key, b"apples".to_vec(), &CausalContext::empty()).await.unwrap();
    }
    let raw = cluster.raw();
    let get = |key: &str| Request::Get { store: StoreName::default_store(), key: key.as_bytes().to_vec() };
    for _ in 0..100 {
        if matches!(raw.call(cluster.addrs[2], None, get("cart")).await, Ok(Response::State(Some(_)))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = cluster.node(2).incarnation();
    cluster.stop(2).await;
    {
        let engine = DurableEngine::open(&cluster.dir.path().join("n2").join("data"), SyncPolicy::Always).unwrap();
        let (space, key) = (layout::space(&StoreName::default_store()), layout::record_key(b"cart"));
        let mut bytes = engine.get(&space, &key).unwrap().expect("n2 held the record");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        engine.put(&space, &key, &bytes).unwrap();
    }
    cluster.restart(2).await;
    cluster.settle().await;
    // The node is up and serves its other keys; the damaged key is served by the others.
    assert!(matches!(raw.call(cluster.addrs[2], None, get("other")).await, Ok(Response::State(Some(_)))));
    assert_eq!(store.get("cart").await.unwrap().values.len(), 1);
    // n2 rebuilds the record from the other replicas, with no read through a coordinator.
    let mut held = None;
    for _ in 0..100 {
        match raw.call(cluster.addrs[2], None, get("cart")).await {
            Ok(Response::State(Some(state))) => {
                held = Some(state.siblings);
                break;
            }
            Ok(Response::Error(e)) => assert_eq!(e.kind, ErrorKind::Internal, "{e:?}"),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = held.expect("n2 rebuilt the damaged record");
    assert_eq!(held.values().map(|v| v.as_ref().to_vec()).collect::<Vec<_>>(), vec![b"apples".to_vec()]);
    let stats = cluster.node(2).stats();
    assert_eq!((stats.damaged_records, stats.damaged_repaired), (1, 1));
    // A clean stop after damage still begins a new incarnation at the next start.
    let second = cluster.node(2).incarnation();
    cluster.stop(2).await;
    cluster.restart(2).await;
    assert_eq!(cluster.node(2).incarnation(), second + 1, "first {first}, then {second}");
    client.close();
    cluster.shutdown().await;
}

/// A byte flipped inside a stopped node's storage journal stopped it from starting for good
/// (`JournalRecovery(ChecksumMismatch)`). Now the damaged journal file is moved aside, the
/// engine is rebuilt from what it still holds, the node starts in a new incarnation, and the
/// writes the file held come back from the other replicas with no read of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_damaged_journal_starts_and_is_refilled() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    let value = vec![b'q'; 600];
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        store.put(key, value.clone(), &CausalContext::empty()).await.unwrap();
    }
    let raw = cluster.raw();
    let n2 = cluster.addrs[2];
    wait_until_held(&raw, n2, &keys, |_| None).await;
    let first = cluster.node(2).incarnation();
    cluster.stop(2).await;
    // A byte of a value in the middle of n2's journal.
    let data = cluster.dir.path().join("n2").join("data");
    let journals = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path());
    let journals: Vec<_> = journals.filter(|p| p.extension().is_some_and(|e| e == "jnl")).collect();
    let mut flipped = false;
    for journal in journals {
        let mut bytes = std::fs::read(&journal).unwrap();
        let runs: Vec<usize> =
            bytes.windows(value.len()).enumerate().filter(|(_, w)| *w == value.as_slice()).map(|(i, _)| i).collect();
        if runs.len() >= 3 {
            bytes[runs[runs.len() / 2] + 300] ^= 0x01;
            std::fs::write(&journal, &bytes).unwrap();
            flipped = true;
            break;
        }
    }
    assert!(flipped, "n2's journal holds the writes");
    cluster.restart(2).await;
    assert_eq!(cluster.node(2).incarnation(), first + 1, "a start after a loss is a new incarnation");
    let quarantine = cluster.dir.path().join("n2").join("data-quarantine");
    assert!(std::fs::read_dir(&quarantine).unwrap().count() >= 2, "the damaged file and the replaced engine are kept");
    cluster.settle().await;
    // Anti-entropy brings every key back to n2.
    assert_eq!(wait_until_held(&raw, n2, &keys, |_| None).await, keys.len(), "n2 was refilled");
    client.close();
    cluster.shutdown().await;
}

/// A byte flipped inside a table file of a stopped node (not a record's own bytes: a block of
/// the table, whose keys are lost with it). The node starts, its start-up scan goes on past the
/// block and reports the range it could not read, anti-entropy brings the lost records back
/// with no read of any key, and every key is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_damaged_table_block_is_refilled_by_anti_entropy() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    let keys: Vec<String> = (0..600).map(|i| format!("key-{i:04}")).collect();
    let value = |key: &str| key.repeat(40).into_bytes();
    for key in &keys {
        store.put(key, value(key), &CausalContext::empty()).await.unwrap();
    }
    let raw = cluster.raw();
    let n2 = cluster.addrs[2];
    let expect = |key: &str| Some(value(key));
    assert_eq!(wait_until_held(&raw, n2, &keys, expect).await, keys.len(), "n2 holds every key before the damage");
    cluster.stop(2).await;
    let data = cluster.dir.path().join("n2").join("data");
    {
        let engine = DurableEngine::open(&data, SyncPolicy::Always).unwrap();
        engine.flush_memtables().unwrap();
    }
    let table = tables_under(&data)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("n2 has a table file");
    let mut bytes = std::fs::read(&table).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&table, &bytes).unwrap();
    let lost = {
        // Some records are lost with the block.
        let engine = DurableEngine::open(&data, SyncPolicy::Always).unwrap();
        let space = layout::space(&StoreName::default_store());
        keys.iter().filter(|k| engine.get(&space, &layout::record_key(k.as_bytes())).is_err()).count() as u64
    };
    assert!(lost > 0, "the flipped byte damaged a block of records");
    cluster.restart(2).await;
    // Anti-entropy pulls the lost records back, with no read of any key anywhere.
    let mut repaired = 0;
    for _ in 0..200 {
        repaired = cluster.node(2).stats().damaged_repaired;
        if repaired >= lost {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = cluster.node(2).stats();
    assert!(stats.damaged_ranges >= 1, "the start-up scan reported the range");
    // (Its own pulls, or its peers' pushes: their leaves differ from n2's too.)
    assert!(repaired >= lost, "{repaired} of {lost} lost records brought back by anti-entropy: {stats:?}");
    // `quickv status` asked of n2 shows it.
    let Ok(Response::Status(report)) = raw.call(n2, None, Request::Status).await else { panic!("no status") };
    assert!(report.damage.ranges >= 1 && report.damage.records >= lost, "{:?}", report.damage);
    assert_eq!(report.damage.repaired, report.damage.records);
    // Every key is served, and n2 holds every one.
    cluster.settle().await;
    for key in keys.iter().step_by(7) {
        assert_eq!(store.get(key).await.unwrap().values.len(), 1, "{key}");
    }
    assert_eq!(wait_until_held(&raw, n2, &keys, expect).await, keys.len(), "n2 was refilled");
    client.close();
    cluster.shutdown().await;
}

/// Asks `node` for each of `keys` (a replica read of the default store) until it holds all of
/// them (each with the value `expect` gives, if it gives one), for at most about 20 s; returns
/// how many it holds.
async fn wait_until_held(
    raw: &Transport,
    node: SocketAddr,
    keys: &[String],
    expect: impl Fn(&str) -> Option<Vec<u8>>,
) -> usize {
    let mut held = 0;
    for _ in 0..100 {
        held = 0;
        for key in keys {
            let get = Request::Get { store: StoreName::default_store(), key: key.as_bytes().to_vec() };
            if let Ok(Response::State(Some(state))) = raw.call(node, None, get).await
                && expect(key).is_none_or(|value| state.siblings.values().any(|v| v.as_ref() == value.as_slice()))
            {
                held += 1;
            }
        }
        if held == keys.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    held
}

/// The table files under a durable engine's folder.
fn tables_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(tables_under(&path));
        } else if path.parent().is_some_and(|p| p.ends_with("tables")) {
            out.push(path);
        }
    }
    out
}
