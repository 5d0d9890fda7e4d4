//! Issue 8, 3.4: damaged storage is repaired, not fatal.

use std::time::Duration;

use quickv_client::CausalContext;
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
    let get = |key: &str| Request::Get { store: StoreName::default_store(), key: key.as_bytes().to_vec() };
    let n2 = cluster.addrs[2];
    let held_by_n2 = async |keys: &[String]| {
        let mut held = 0;
        for key in keys {
            if matches!(raw.call(n2, None, get(key)).await, Ok(Response::State(Some(_)))) {
                held += 1;
            }
        }
        held
    };
    for _ in 0..100 {
        if held_by_n2(&keys).await == keys.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let mut held = 0;
    for _ in 0..200 {
        held = held_by_n2(&keys).await;
        if held == keys.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held, keys.len(), "n2 was refilled");
    client.close();
    cluster.shutdown().await;
}
