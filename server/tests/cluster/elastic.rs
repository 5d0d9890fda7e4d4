//! Issue 9, 5.2 (with 3.1): real `quickv-node run` processes grow and shrink under a steady write
//! load, driven with the real `quickv` tool, and lose nothing.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quickv_client::{CausalContext, Client, ConflictPolicy, NodeId, NodeStatus, QuorumKind, StoreConfig, StoreName};
use quickv_core::token::Token;
use quickv_core::wire::{Request, Response};

use crate::process::{Folder, client_of, finish, one_at_a_time, quickv_binary, raw_transport, test_port, text};

/// One write of the steady load: when it started (since the load began), how long it took, its
/// key, and whether it was acknowledged.
struct Sample {
    at: Duration,
    took: Duration,
    key: String,
    ok: bool,
    /// Why it failed, if it did.
    error: Option<String>,
}

/// The `p`th percentile (0-100) of `values`, in milliseconds.
fn percentile(values: &mut [Duration], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort();
    let index = ((values.len() - 1) as f64 * p / 100.0).round() as usize;
    values[index].as_secs_f64() * 1000.0
}

/// The value every write of `key` carries (one write per key: the latest value is this one).
fn value_of(key: &str, size: usize) -> Vec<u8> {
    let mut value = key.as_bytes().to_vec();
    value.resize(size, b'.');
    value
}

/// Waits up to `limit` for `ready` to hold of the client's freshly fetched view.
fn wait_for(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    limit: Duration,
    what: &str,
    ready: impl Fn(&quickv_client::ClusterView) -> bool,
) -> Duration {
    let begun = Instant::now();
    while begun.elapsed() < limit {
        if runtime.block_on(client.refresh()).is_ok() && ready(&client.view()) {
            return begun.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within {limit:?}");
}

/// The ring's members, in id order.
fn ring_ids(view: &quickv_client::ClusterView) -> Vec<String> {
    view.ring().map(|r| r.nodes().iter().map(|n| n.id.as_str().to_owned()).collect()).unwrap_or_default()
}

/// Writes `count` keys `prefix-N` of `size` bytes to `store`, 32 at a time.
fn load(runtime: &tokio::runtime::Runtime, store: &quickv_client::Store, prefix: &str, count: usize, size: usize) {
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..count {
            if tasks.len() >= 32 {
                tasks.join_next().await.unwrap().unwrap();
            }
            let (store, key) = (store.clone(), format!("{prefix}-{k}"));
            tasks.spawn(async move {
                let value = value_of(&key, size);
                store.put(&key, value, &CausalContext::empty()).await.unwrap_or_else(|e| panic!("{key}: {e}"));
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
}

/// Whether `node` holds `key` of `store` itself (a replica read, no coordination).
fn holds(
    runtime: &tokio::runtime::Runtime,
    raw: &quickv_client::transport::Transport,
    node: std::net::SocketAddr,
    store: &StoreName,
    keys: &[String],
) -> Vec<String> {
    runtime.block_on(async {
        let mut missing = Vec::new();
        for key in keys {
            let get = Request::Get { store: store.clone(), key: key.clone().into_bytes() };
            if !matches!(raw.call(node, None, get).await, Ok(Response::State(Some(_)))) {
                missing.push(key.clone());
            }
        }
        missing
    })
}

/// `quickv ARGS` against the cluster at `seed`.
fn quickv(seed: &str, ca: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(quickv_binary()).args(args).env("QUICKV_SEEDS", seed).env("QUICKV_CA", ca).output().unwrap()
}

/// Three nodes under a steady write load; a fourth joins with `--capacity 2`; once it has its
/// partitions, `quickv node leave` drains one of the first three, which is then stopped; another
/// is SIGKILLed and `quickv node remove`d. Every acknowledged write reads back with its value,
/// each survivor holds every key the ring gives it, and a one-replica store's keys were spread
/// in proportion to capacity (3.1). Prints the transfer's throughput and the load's latency
/// before and during it.
#[test]
fn nodes_join_leave_and_are_removed_under_load_and_nothing_is_lost() {
    let _serial = one_at_a_time();
    let dir = Folder::init();
    let port = test_port(8);
    let addr = |i: u16| format!("127.0.0.1:{}", port + i);
    let sock = |i: u16| -> std::net::SocketAddr { addr(i).parse().unwrap() };
    let mut nodes: Vec<Child> = (0..3).map(|i| dir.member_with(i, &addr(i), &addr(0), &[])).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ca_path = dir.path().join("ca.pem");
        let ca = quickv_client::ClusterCa::from_pem_file(&ca_path).unwrap();
        let client = client_of(&runtime, &ca, &addr(0), 3);
        let store = runtime.block_on(client.store("default")).unwrap();
        // One replica a key, so each key lives on exactly its owner: counts show the shares.
        let single = StoreName::new("single").unwrap();
        let one = StoreConfig::new(1, 1, 1, QuorumKind::Strict, ConflictPolicy::Siblings).unwrap();
        runtime.block_on(client.create_store(&single, one)).unwrap();
        let single_store = runtime.block_on(client.store("single")).unwrap();
        load(&runtime, &store, "pre", 2000, 1024);
        load(&runtime, &single_store, "one", 6000, 64);

        // The steady load: one write after another, at most 100 a second.
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let begun = Instant::now();
        let writer = {
            let (store, samples, stop) = (store.clone(), samples.clone(), stop.clone());
            runtime.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load-{n}");
                    n += 1;
                    let at = begun.elapsed();
                    let put = store.put(&key, value_of(&key, 1024), &CausalContext::empty()).await;
                    let took = begun.elapsed() - at;
                    let error = put.as_ref().err().map(|e| format!("{e}"));
                    samples.lock().unwrap().push(Sample { at, took, key, ok: put.is_ok(), error });
                    tokio::time::sleep(Duration::from_millis(10).saturating_sub(took)).await;
                }
            })
        };
        std::thread::sleep(Duration::from_secs(5));

        // n3 joins with twice the capacity; the change commits once it has its partitions.
        let joined_at = begun.elapsed();
        nodes.push(dir.member_with(3, &addr(3), &addr(0), &["--capacity", "2"]));
        let transfer = wait_for(&runtime, &client, Duration::from_secs(90), "n3's join", |view| {
            view.transition().is_none() && ring_ids(view) == ["n0", "n1", "n2", "n3"]
        });
        let committed_at = begun.elapsed();
        let view = client.view();
        let ring = view.ring().unwrap().clone();
        let raw = raw_transport(&runtime, &ca, "127.0.0.1:0");

        // 3.1: the one-replica store's keys, per owner, against the capacity shares (1, 1, 1, 2).
        let one_keys: Vec<String> = (0..6000).map(|k| format!("one-{k}")).collect();
        let mut owned: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for key in &one_keys {
            let owner = ring.preference_list(Token::of(key.as_bytes()), 1, 0).primaries()[0].clone();
            owned.entry(owner.as_str().to_owned()).or_default().push(key.clone());
        }
        for (id, keys) in &owned {
            let missing = holds(&runtime, &raw, sock(id[1..].parse().unwrap()), &single, keys);
            assert!(missing.is_empty(), "{id} lacks {} of the {} keys it owns", missing.len(), keys.len());
            let share = keys.len() as f64 / one_keys.len() as f64;
            let capacity_share = if id == "n3" { 0.4 } else { 0.2 };
            println!(
                "{id}: {} keys of the one-replica store, share {share:.3} (capacity share {capacity_share})",
                keys.len()
            );
            assert!(
                (share / capacity_share - 1.0).abs() <= 0.1,
                "{id}'s share {share:.3} is not within 10% of {capacity_share}"
            );
        }
        // What n3 received: the keys of both stores it is a replica of now, as written.
        let n3 = NodeId::new("n3").unwrap();
        let gained = (0..2000)
            .filter(|k| ring.preference_list(Token::of(format!("pre-{k}").as_bytes()), 3, 0).is_primary(&n3))
            .count()
            * (1024 + 8)
            + owned.get("n3").map_or(0, Vec::len) * (64 + 8);
        runtime.block_on(client.drop_store(&single)).unwrap();

        // n1 leaves, through the tool; once the cluster shows it left, it is stopped.
        let leave = quickv(&addr(0), &ca_path, &["node", "leave", "n1"]);
        assert!(leave.status.success(), "{}", text(&leave.stderr));
        let n1 = NodeId::new("n1").unwrap();
        let drained = wait_for(&runtime, &client, Duration::from_secs(90), "n1's leave", |view| {
            view.membership().node(&n1).is_some_and(|n| n.status == NodeStatus::Removed) && view.transition().is_none()
        });
        nodes[1].kill().unwrap();
        let _ = nodes[1].wait();
        // n2 is killed, and removed once the cluster holds it down.
        nodes[2].kill().unwrap();
        let _ = nodes[2].wait();
        let removal_asked = Instant::now();
        loop {
            let remove = quickv(&addr(0), &ca_path, &["node", "remove", "n2"]);
            if remove.status.success() {
                break;
            }
            assert!(text(&remove.stderr).contains("is up"), "{}", text(&remove.stderr));
            assert!(removal_asked.elapsed() < Duration::from_secs(30), "n2 was never held down");
            std::thread::sleep(Duration::from_millis(250));
        }
        let rebuilt = wait_for(&runtime, &client, Duration::from_secs(90), "n2's removal", |view| {
            view.transition().is_none() && ring_ids(view) == ["n0", "n3"]
        });
        let removed_at = begun.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        println!(
            "removed at {:.2} s, load stopped at {:.2} s",
            removed_at.as_secs_f64(),
            begun.elapsed().as_secs_f64()
        );
        runtime.block_on(writer).unwrap();

        // Every acknowledged write reads back with its value.
        let samples = std::mem::take(&mut *samples.lock().unwrap());
        let acknowledged: Vec<String> = (0..2000)
            .map(|k| format!("pre-{k}"))
            .chain(samples.iter().filter(|s| s.ok).map(|s| s.key.clone()))
            .collect();
        let failed = samples.iter().filter(|s| !s.ok).count();
        for s in samples.iter().filter(|s| !s.ok) {
            println!("write {} at {:.2} s failed: {:?}", s.key, s.at.as_secs_f64(), s.error);
        }
        for key in &acknowledged {
            let read = runtime.block_on(store.get(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(read.values, vec![value_of(key, 1024).into()], "{key}");
        }
        // The survivors each hold every key (two nodes, three replicas a key: both own them all).
        for i in [0u16, 3] {
            let missing = holds(&runtime, &raw, sock(i), &StoreName::default_store(), &acknowledged);
            assert!(
                missing.is_empty(),
                "n{i} lacks {} of {} keys: {:?}",
                missing.len(),
                acknowledged.len(),
                &missing[..missing.len().min(5)]
            );
        }
        let latencies = |from: Duration, to: Duration| -> Vec<Duration> {
            samples.iter().filter(|s| s.ok && s.at >= from && s.at < to).map(|s| s.took).collect()
        };
        let (mut before, mut during) = (latencies(Duration::ZERO, joined_at), latencies(joined_at, committed_at));
        println!(
            "transfer to n3: {:.2} s, {:.2} MB of keys it owns ({:.2} MB/s)",
            transfer.as_secs_f64(),
            gained as f64 / 1e6,
            gained as f64 / 1e6 / transfer.as_secs_f64()
        );
        println!(
            "writes before the join: {} p50 {:.2} ms p99 {:.2} ms; during the transfer: {} p50 {:.2} ms p99 {:.2} ms",
            before.len(),
            percentile(&mut before, 50.0),
            percentile(&mut before, 99.0),
            during.len(),
            percentile(&mut during, 50.0),
            percentile(&mut during, 99.0)
        );
        println!(
            "leave of n1: {:.2} s; removal of n2: {:.2} s; {} writes acknowledged, {failed} failed",
            drained.as_secs_f64(),
            rebuilt.as_secs_f64(),
            samples.len() - failed
        );
        assert!(failed * 20 <= samples.len(), "{failed} of {} writes failed", samples.len());
        client.close();
    }));
    finish(&mut nodes, result);
}
