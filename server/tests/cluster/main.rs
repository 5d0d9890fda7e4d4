//! Integration tests: nodes on loopback QUIC, the smart client, plain callers and bad input.

#![allow(clippy::unwrap_used)]

mod damage;
mod departure;
mod elastic;
mod http;
mod partition;
mod process;
mod support;
mod webtransport;

use std::time::Duration;

use quickv_client::{CausalContext, Client, ClusterCa, ConflictPolicy, GetError, PutError, StoreConfig, StoreName};
use quickv_core::identity::NodeId;
use quickv_core::store::Limits;
use quickv_core::token::Token;
use quickv_core::version::{ContextPart, Dot, Seal, VersionVector, Write};
use quickv_core::wire::{self, ErrorKind, Message, Request, Response};
use quickv_server::node::Node;
use quickv_server::node::bounds::Bounds;
use support::Cluster;

fn values(read: &quickv_client::Versions) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = read.values.iter().map(|v| v.as_ref().to_vec()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_and_siblings() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    assert_eq!(store.config(), StoreConfig::quorum());

    assert!(store.get("cart").await.unwrap().is_absent());
    let ctx = store.put("cart", b"apples".to_vec(), &CausalContext::empty()).await.unwrap();
    let read = store.get("cart").await.unwrap();
    assert_eq!(values(&read), vec![b"apples".to_vec()]);
    assert_eq!(read.context, ctx);

    // Two writes without context are concurrent: both stay, as siblings.
    store.put("pair", b"x".to_vec(), &CausalContext::empty()).await.unwrap();
    store.put("pair", b"y".to_vec(), &CausalContext::empty()).await.unwrap();
    let both = store.get("pair").await.unwrap();
    assert_eq!(values(&both), vec![b"x".to_vec(), b"y".to_vec()]);
    // A write with the merged context replaces both.
    store.put("pair", b"xy".to_vec(), &both.context).await.unwrap();
    assert_eq!(values(&store.get("pair").await.unwrap()), vec![b"xy".to_vec()]);

    // Delete with the read's context.
    let read = store.get("cart").await.unwrap();
    store.delete("cart", &read.context).await.unwrap();
    assert!(store.get("cart").await.unwrap().is_absent());
    client.close();
    cluster.shutdown().await;
}

/// Issue 9, 2.5: `locate` names a key's token, its N primaries and
/// its fallbacks under the client's ring, and what each holds: after a put, every primary holds
/// the version; after a delete, the primaries hold the tombstone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_names_a_keys_replicas_and_what_each_holds() {
    use quickv_client::Holding;
    let cluster = Cluster::start(4).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    let ctx = store.put("cart", b"apples".to_vec(), &CausalContext::empty()).await.unwrap();
    // The write is acknowledged after W=2 replicas: the third takes it a moment later.
    let one = Holding::Versions { count: 1, tombstone: false };
    let location = located(&store, |l| l.primaries.iter().all(|(_, h)| *h == one)).await;
    assert_eq!(location.token, quickv_core::token::Token::of(b"cart"));
    assert_eq!(location.primaries.len(), 3);
    assert_eq!(location.fallbacks.len(), 1, "four nodes: one left over as a fallback");
    assert!(location.pending.is_empty(), "no ring change under way");
    // The fallback holds nothing, unless it stood in for a primary that was slow to answer (a
    // sloppy store's hinted copy: on a loaded machine it happens).
    assert!(matches!(location.fallbacks[0].1, Holding::Nothing | Holding::Versions { count: 1, tombstone: false }));
    store.delete("cart", &ctx).await.unwrap();
    let deleted = Holding::Versions { count: 1, tombstone: true };
    located(&store, |l| l.primaries.iter().all(|(_, h)| *h == deleted)).await;
    client.close();
    cluster.shutdown().await;
}

/// Issue 9, 1.2: with nodes that wait for commits, joins change the membership and not the
/// ring; the client's plan shows what the change moves (the joiners gain, the bytes to move
/// estimated from what the nodes store), and committing it moves the ring everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_change_is_planned_then_committed() {
    let cluster =
        Cluster::start_tweaked(3, Limits::default(), Bounds::default(), |c| c.automatic_ring_changes = false).await;
    let client = cluster.client().await;
    assert_eq!(client.view().ring().unwrap().nodes().len(), 1, "the founder's ring only");
    // One replica a key: the one-node ring can take writes.
    let one = StoreConfig::new(1, 1, 1, quickv_client::QuorumKind::Sloppy, ConflictPolicy::Siblings).unwrap();
    client.create_store(&StoreName::new("one").unwrap(), one).await.unwrap();
    let store = client.store("one").await.unwrap();
    for i in 0..50 {
        store.put(format!("cart{i}"), vec![7; 1000], &CausalContext::empty()).await.unwrap();
    }
    // Each node measures its storage about once a second.
    let mut change = client.plan_ring_change().await.unwrap().expect("a change is pending");
    for _ in 0..40 {
        if change.stored_bytes.values().all(Option::is_some) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        change = client.plan_ring_change().await.unwrap().expect("still pending");
    }
    assert!(change.stored_bytes.values().all(Option::is_some), "{:?}", change.stored_bytes);
    assert_eq!(change.claimant.as_str(), "n0");
    let gained: Vec<_> = change.plan.nodes.iter().filter(|n| n.gained > 0).map(|n| n.id.as_str()).collect();
    assert_eq!(gained, ["n1", "n2"]);
    let n1 = NodeId::new("n1").unwrap();
    assert!(change.bytes_to_receive(&n1) > 0, "n0 stores something, so n1 receives some of it");
    assert_eq!(change.under_way, None, "waiting for the commit");
    client.commit_ring_change(&change).await.unwrap();
    // The commit starts the change; n1 and n2 receive their partitions, then the claimant
    // commits it, one epoch later, with the owners the plan showed.
    let mut done = None;
    for _ in 0..100 {
        match client.plan_ring_change().await.unwrap() {
            Some(c) => assert_eq!(c.under_way.map(|(_, gainers)| gainers), Some(2), "under way"),
            None => {
                done = client.view().ring().cloned();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ring = done.expect("the change was committed within 10 s");
    assert_eq!(
        (ring.epoch(), ring.with_epoch(change.plan.next.epoch).version()),
        (change.plan.next.epoch + 1, change.plan.next)
    );
    // A second commit of the same plan is refused, saying why.
    let err = client.commit_ring_change(&change).await.unwrap_err();
    assert!(err.to_string().contains("no ring change is pending"), "{err}");
    cluster.settle().await;
    for node in cluster.running() {
        assert_eq!(node.view().ring().unwrap().version(), ring.version());
    }
    // Every write reads back after the change, the new replicas serving it.
    for i in 0..50 {
        assert_eq!(store.get(format!("cart{i}")).await.unwrap().values, vec![vec![7; 1000].into()]);
    }
    client.close();
    cluster.shutdown().await;
}

/// `cart`'s location once `ready` says so (within 5 s; the last one seen in the panic).
async fn located(
    store: &quickv_client::Store,
    ready: impl Fn(&quickv_client::Location) -> bool,
) -> quickv_client::Location {
    let mut last = None;
    for _ in 0..100 {
        let location = store.locate("cart").await.unwrap();
        if ready(&location) {
            return location;
        }
        last = Some(location);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not as expected within 5 s: {last:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lww_stores_keep_one_value_and_settings_are_fixed() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let name = StoreName::new("prefs").unwrap();
    let lww = StoreConfig::quorum().with_conflicts(ConflictPolicy::Lww);
    assert!(client.create_store(&name, lww).await.unwrap());
    assert!(!client.create_store(&name, lww).await.unwrap(), "same settings again is fine");
    let err = client.create_store(&name, StoreConfig::strict()).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("cannot change"), "{err}");

    let store = client.store("prefs").await.unwrap();
    assert_eq!(store.config(), lww);
    store.put("theme", b"dark".to_vec(), &CausalContext::empty()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.put("theme", b"light".to_vec(), &CausalContext::empty()).await.unwrap();
    assert_eq!(values(&store.get("theme").await.unwrap()), vec![b"light".to_vec()]);

    // The catalogue reaches every node.
    for _ in 0..100 {
        if cluster.running().all(|n| n.view().store(&name).is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cluster.running().all(|n| n.view().store(&name) == Some(&lww)));
    client.close();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_holds_with_one_of_three_nodes_stopped_and_a_restarted_node_keeps_its_data() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    for i in 0..20 {
        store.put(format!("k{i}"), format!("v{i}").into_bytes(), &CausalContext::empty()).await.unwrap();
    }
    cluster.stop(2).await;
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(values(&store.get(&key).await.unwrap()), vec![format!("v{i}").into_bytes()]);
        let read = store.get(&key).await.unwrap();
        store.put(&key, format!("w{i}").into_bytes(), &read.context).await.unwrap();
    }
    let strict = StoreName::new("strict").unwrap();
    client.create_store(&strict, StoreConfig::strict()).await.unwrap();
    let strict = client.store("strict").await.unwrap();
    strict.put("s", b"1".to_vec(), &CausalContext::empty()).await.unwrap();
    assert_eq!(values(&strict.get("s").await.unwrap()), vec![b"1".to_vec()]);

    // With 3 nodes and N=3, node 0 is a replica of every key and acknowledged every write above
    // (the client waited for W=2 of the 2 running nodes). Restart it and ask it directly.
    cluster.stop(0).await;
    cluster.restart(0).await;
    let raw = cluster.raw();
    let mut held = 0;
    for i in 0..20 {
        let request = Request::Get { store: StoreName::default_store(), key: format!("k{i}").into_bytes() };
        match raw.call(cluster.addrs[0], None, request).await.unwrap() {
            Response::State(Some(state)) => {
                let vals: Vec<_> = state.siblings.values().map(|v| v.as_ref().to_vec()).collect();
                assert!(
                    vals == vec![format!("w{i}").into_bytes()] || vals == vec![format!("v{i}").into_bytes()],
                    "k{i} on the restarted node holds {:?}",
                    vals.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect::<Vec<_>>()
                );
                held += 1;
            }
            other => panic!("restarted node lost k{i}: {other:?}"),
        }
    }
    assert_eq!(held, 20);
    raw.close();
    client.close();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sloppy_stores_stay_writable_where_strict_ones_refuse() {
    let mut cluster = Cluster::start(5).await;
    let client = cluster.client().await;
    let view = client.view();
    let ring = view.ring().unwrap();
    // A key whose two replicas stopped below do not include n0, which decides store creates.
    let (key, prefs) = (0..)
        .map(|i| format!("hot-key-{i}").into_bytes())
        .map(|key| {
            let prefs = ring.preference_list(Token::of(&key), 3, 2);
            (key, prefs)
        })
        .find(|(_, prefs)| prefs.primaries()[1..].iter().all(|id| id.as_str() != "n0"))
        .unwrap();
    let key = &key[..];
    // Stop two of the key's three replicas.
    for id in &prefs.primaries()[1..] {
        cluster.stop(Cluster::index_of(id)).await;
    }
    let sloppy = client.store("default").await.unwrap();
    sloppy.put(key, b"v".to_vec(), &CausalContext::empty()).await.unwrap();
    assert_eq!(values(&sloppy.get(key).await.unwrap()), vec![b"v".to_vec()]);

    client.create_store(&StoreName::new("strict").unwrap(), StoreConfig::strict()).await.unwrap();
    let strict = client.store("strict").await.unwrap();
    let err = strict.put(key, b"v".to_vec(), &CausalContext::empty()).await.unwrap_err();
    assert!(matches!(err, PutError::Unavailable { required: 2, .. }), "{err}");
    assert!(err.is_retryable());
    // Issue 8, 2.1: a strict store says that fallbacks never count.
    assert!(err.to_string().contains("a strict store counts its N primaries only, never fallbacks"), "{err}");
    let err = strict.get(key).await.unwrap_err();
    // The replicas known down fail at once: the get fails as soon as R is out of reach, before
    // or after the live replica answers.
    assert!(matches!(err, GetError::Unavailable { required: 2, answered: 0 | 1, .. }), "{err}");
    assert!(err.to_string().contains("never fallbacks"), "{err}");
    client.close();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smart_client_sends_only_to_replicas() {
    let cluster = Cluster::start(5).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    // Counted from here: the cluster's forming (ring changes, their transfers) is not the
    // client's doing.
    let misrouted_before: Vec<u64> = cluster.running().map(|n| n.stats().misrouted).collect();
    for i in 0..40 {
        store.put(format!("key-{i}"), vec![1u8; 100], &CausalContext::empty()).await.unwrap();
    }
    // Each put went, once, to one replica, which applied it and replicated it (3.10: the value
    // crosses the client's link once). (Counted before the reads: a read that finds a replica
    // the last replicate has not reached yet asks a node to coordinate its repair.)
    let coordinated: u64 = cluster.running().map(|n| n.stats().coordinated).sum();
    assert_eq!(coordinated, 40);
    for i in 0..40 {
        store.get(format!("key-{i}")).await.unwrap();
    }
    // Replies come at the quorum; the last replicate or read of each request may still be on
    // its way.
    let mut total = 0;
    for _ in 0..100 {
        total = cluster.running().map(|n| n.stats().replica_requests).sum::<u64>();
        if total >= 40 * 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(total >= 40 * 5, "each put reaches 2 more replicas and each get asks 3: {total}");
    // Nothing went to a node that is not a replica.
    for (node, before) in cluster.running().zip(misrouted_before) {
        let stats = node.stats();
        assert_eq!(stats.misrouted - before, 0, "{} got a request for a key it is not a replica of", node.id());
    }
    client.close();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_callers_are_coordinated_by_any_node() {
    let cluster = Cluster::start(3).await;
    let raw = cluster.raw();
    let store = StoreName::default_store();
    let write = Write::put(b"plain".to_vec(), CausalContext::empty(), 1);
    let put = Request::CoordinatePut { store: store.clone(), key: b"p".to_vec(), write, minter: None };
    assert!(matches!(raw.call(cluster.addrs[1], None, put).await.unwrap(), Response::State(Some(_))));
    let get = Request::CoordinateGet { store, key: b"p".to_vec() };
    match raw.call(cluster.addrs[2], None, get).await.unwrap() {
        Response::State(Some(state)) => assert_eq!(state.siblings.values().next().unwrap().as_ref(), b"plain"),
        other => panic!("{other:?}"),
    }
    assert_eq!(cluster.node(1).stats().coordinated, 1);
    assert_eq!(cluster.node(2).stats().coordinated, 1);
    // The smart client sees the plain caller's write.
    let client = cluster.client().await;
    let read = client.store("default").await.unwrap().get("p").await.unwrap();
    assert_eq!(values(&read), vec![b"plain".to_vec()]);
    raw.close();
    client.close();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_reach_nodes_and_clients() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let old_epoch = client.view().ring().unwrap().epoch();
    cluster.add_node().await;
    cluster.add_node().await;
    cluster.settle().await;
    // The client still routes with the old ring; nodes that are no longer replicas say so, and
    // the client refreshes and retries.
    let store = client.store("default").await.unwrap();
    for i in 0..30 {
        store.put(format!("m{i}"), b"v".to_vec(), &CausalContext::empty()).await.unwrap();
    }
    client.refresh().await.unwrap();
    let view = client.view();
    assert_eq!(view.membership().len(), 5);
    assert!(view.ring().unwrap().epoch() > old_epoch);
    assert_eq!(view.ring(), cluster.node(4).view().ring());
    client.close();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let limits = Limits { max_key: 32, max_value: 1024 };
    let cluster = Cluster::start_with(3, limits).await;
    let raw = cluster.raw();
    let addr = cluster.addrs[0];
    let default = StoreName::default_store();

    // A value over the node's limit: refused, naming the limit.
    let big = Write::put(vec![0u8; 2000], CausalContext::empty(), 1);
    let put = Request::CoordinatePut { store: default.clone(), key: b"k".to_vec(), write: big.clone(), minter: None };
    let Response::Error(e) = raw.call(addr, None, put).await.unwrap() else { panic!("accepted") };
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(e.message.contains("(max_value) is 1024"), "{}", e.message);
    // Replica writes need a node certificate (3.4): a plain caller asks a node to coordinate.
    let mint = Request::Mint { store: default.clone(), key: b"k".to_vec(), write: big, hint_for: None };
    let Response::Error(e) = raw.call(addr, None, mint).await.unwrap() else { panic!("accepted") };
    assert_eq!(e.kind, ErrorKind::NotPermitted);
    let mut forged = quickv_core::version::Siblings::new();
    let attacker = NodeId::new("attacker").unwrap();
    forged
        .apply(&attacker, &Write::put(b"evil".to_vec(), CausalContext::empty(), 1), ConflictPolicy::Siblings)
        .unwrap();
    let replicate = Request::Replicate { store: default.clone(), key: b"k".to_vec(), siblings: forged, hint_for: None };
    let Response::Error(e) = raw.call(addr, None, replicate).await.unwrap() else { panic!("accepted") };
    assert_eq!(e.kind, ErrorKind::NotPermitted);
    // A key over the limit.
    let get = Request::Get { store: default.clone(), key: vec![b'k'; 33] };
    let Response::Error(e) = raw.call(addr, None, get).await.unwrap() else { panic!("accepted") };
    assert!(e.message.contains("(max_key) is 32"), "{}", e.message);
    // A frame over the frame limit.
    let huge = Write::put(vec![0u8; 8 * 1024], CausalContext::empty(), 1);
    let put = Request::CoordinatePut { store: default.clone(), key: b"k".to_vec(), write: huge, minter: None };
    let Response::Error(e) = raw.call(addr, None, put).await.unwrap() else { panic!("accepted") };
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(e.message.contains("frame limit"), "{}", e.message);
    // An unknown store.
    let get = Request::Get { store: StoreName::new("nope").unwrap(), key: b"k".to_vec() };
    let Response::Error(e) = raw.call(addr, None, get).await.unwrap() else { panic!("accepted") };
    assert_eq!(e.kind, ErrorKind::UnknownStore);
    assert!(e.message.contains("store nope does not exist"));
    // A forged context that claims writes no node made (nodes mint as id#incarnation).
    let mut forged = VersionVector::new();
    for n in 0..3 {
        let actor = NodeId::new(&format!("n{n}")).unwrap().in_incarnation(cluster.node(n).incarnation()).unwrap();
        forged.add(&Dot { actor, counter: 1000 });
    }
    let forged = CausalContext::from_parts([ContextPart::new(forged, 0, Seal([9; 16]))]);
    let write = Write::put(b"v".to_vec(), forged, 1);
    let put = Request::CoordinatePut { store: default.clone(), key: b"k".to_vec(), write, minter: None };
    let Response::Error(e) = raw.call(addr, None, put).await.unwrap() else { panic!("accepted") };
    assert_eq!(e.kind, ErrorKind::InvalidContext, "{}", e.message);
    // Membership changes need a node certificate.
    let join = Request::Join { node: quickv_core::membership::NodeInfo::new("evil", "127.0.0.1:1", "z", 1).unwrap() };
    let Response::Error(e) = raw.call(addr, None, join).await.unwrap() else { panic!("accepted") };
    assert_eq!(e.kind, ErrorKind::NotPermitted);
    // Malformed bytes: answered with an error, and the node keeps serving.
    let connection = raw.endpoint().connect(addr, quickv_client::tls::NODE_SERVER_NAME).unwrap().await.unwrap();
    for garbage in [&b""[..], &[1u8, 0xff, 0xff][..], &[9u8, 0][..]] {
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(garbage).await.unwrap();
        send.finish().unwrap();
        let answer = wire::decode(&recv.read_to_end(1 << 20).await.unwrap()).unwrap();
        let Message::Response { body: Response::Error(e), .. } = answer else { panic!("{answer:?}") };
        assert_eq!(e.kind, ErrorKind::Malformed);
    }
    assert!(cluster.node(0).stats().refused >= 5);
    // Nothing was stored by any of the above.
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    assert!(store.get("k").await.unwrap().is_absent());
    // The client checks limits before sending.
    let err = store.put("k", vec![0u8; 20 * 1024 * 1024], &CausalContext::empty()).await.unwrap_err();
    assert!(matches!(err, PutError::OverLimit(_)) && !err.is_retryable(), "{err}");
    // Node-side limits below the client's are reported as refusals.
    let err = store.put("k", vec![0u8; 2000], &CausalContext::empty()).await.unwrap_err();
    assert!(matches!(&err, PutError::Refused(e) if e.kind == ErrorKind::TooLarge), "{err:?}");
    assert!(matches!(client.store("nope").await, Err(quickv_client::StoreError::Unknown(_))));
    // 3.3: the context of another key is refused and changes nothing (it used to replace the
    // key it was used with: `quickv put kb x --context <context of ka>`).
    store.put("ka", b"a1".to_vec(), &CausalContext::empty()).await.unwrap();
    store.put("kb", b"b1".to_vec(), &CausalContext::empty()).await.unwrap();
    let of_ka = store.get("ka").await.unwrap().context;
    let err = store.put("kb", b"x".to_vec(), &of_ka).await.unwrap_err();
    assert!(matches!(&err, PutError::Refused(e) if e.kind == ErrorKind::InvalidContext), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(store.get("kb").await.unwrap().values, vec![b"b1".to_vec().into()]);
    let of_kb = store.get("kb").await.unwrap().context;
    store.put("kb", b"b2".to_vec(), &of_kb).await.unwrap();
    assert_eq!(store.get("kb").await.unwrap().values, vec![b"b2".to_vec().into()]);
    raw.close();
    client.close();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_and_peers_outside_the_cluster_ca_are_refused() {
    let cluster = Cluster::start(1).await;
    let other = tempfile::tempdir().unwrap();
    quickv_server::pki::init_cluster(other.path()).unwrap();
    let foreign_ca = ClusterCa::from_pem_file(other.path().join("ca.pem")).unwrap();
    // A client trusting another CA cannot verify the node.
    let err =
        Client::builder().seeds([cluster.addrs[0].to_string()]).ca_cert(foreign_ca.clone()).build().await.unwrap_err();
    assert!(err.to_string().contains("no seed answered"), "{err}");
    assert!(err.to_string().contains("the CA is the cluster's"), "says what to check: {err}");
    // Issue 9, 4.1: a seed that is not an address is reported as such, with an example.
    let err = Client::builder().seeds(["nohost"]).ca_cert(cluster.ca()).build().await.unwrap_err();
    assert!(matches!(err, quickv_client::ConnectError::BadSeed { .. }), "{err:?}");
    assert!(err.to_string().contains("seed \"nohost\" is not a node address"), "{err}");
    assert!(err.to_string().contains("for example 127.0.0.1:7101"), "{err}");
    // A "node" with a certificate from another CA is refused in the handshake.
    let identity = quickv_server::pki::node_identity(&other.path().join("rogue"), other.path(), &[]).unwrap();
    let config = quickv_client::tls::client_config(&cluster.ca(), Some(&identity)).unwrap();
    let rogue =
        quickv_client::transport::Transport::client(config, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2))
            .unwrap();
    let sync = Request::Sync { view: cluster.node(0).view() };
    assert!(rogue.call(cluster.addrs[0], None, sync).await.is_err());
    assert_eq!(cluster.node(0).view().membership().len(), 1);
    rogue.close();
    cluster.shutdown().await;
}

/// Regression (issue 7, 3.1): a node restarted with the memory engine (same folder, same id)
/// used to mint the dot of its first write again for the next one, and the replicas' merge kept
/// one of the two acknowledged writes. It now mints in a new incarnation (`n0#2`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_without_its_data_never_reuses_a_dot() {
    let mut cluster = Cluster::start(3).await;
    cluster.memory.push(0);
    // Node 0 comes back on the memory engine, then loses everything once more.
    cluster.stop(0).await;
    cluster.restart(0).await;
    cluster.settle().await;
    assert_eq!(cluster.node(0).incarnation(), 2, "a restart on the memory engine is a new incarnation");
    let client = cluster.client().await;
    let view = client.view();
    let ring = view.ring().unwrap();
    let key = (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| ring.preference_list(Token::of(k.as_bytes()), 3, 0).primaries()[0].as_str() == "n0")
        .unwrap();
    let store = client.store("default").await.unwrap();
    store.put(&key, b"first".to_vec(), &CausalContext::empty()).await.unwrap();
    cluster.stop(0).await;
    cluster.restart(0).await;
    cluster.settle().await;
    assert_eq!(cluster.node(0).incarnation(), 3);
    // Node 0 holds nothing now and mints the next write of the key again.
    store.put(&key, b"second".to_vec(), &CausalContext::empty()).await.unwrap();
    let read = store.get(&key).await.unwrap();
    assert_eq!(values(&read), vec![b"first".to_vec(), b"second".to_vec()], "two blind writes, two siblings");
    client.close();
    cluster.shutdown().await;
}

/// Regression (issue 7, 3.2): a node started with an id another node holds (`--id n1`, its own
/// folder and certificate, another address) used to take over n1's entry; when it stopped, every
/// request routed to n1 failed until the real n1 restarted. Its join is now refused with an error
/// naming the id, both addresses and both certificates, and the cluster is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_taken_id_is_refused_and_the_cluster_is_unaffected() {
    let cluster = Cluster::start(3).await;
    let before = cluster.node(0).view();
    let mut config =
        support::config(cluster.dir.path(), 9, "127.0.0.1:0".parse().unwrap(), vec![cluster.addrs[0]], cluster.limits);
    config.id = Some("n1".into());
    let impostor = Node::start(config).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), impostor.join_refused()).await.expect("refused in time");
    assert!(reason.contains("node id n1 is taken"), "{reason}");
    assert!(reason.contains(&cluster.addrs[1].to_string()), "names the holder: {reason}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in cluster.running() {
        assert_eq!(node.view(), before, "views are unchanged");
    }
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    for i in 0..10 {
        store.put(&format!("k{i}"), b"v".to_vec(), &CausalContext::empty()).await.unwrap();
    }
    impostor.shutdown().await;
    client.close();
    cluster.shutdown().await;
}

/// Issue 8, 3.1 (part): a read goes on after its answer and repairs the replicas that answered
/// with less; a program that exits right after the answer (`quickv get`) used to lose those
/// repairs. `Client::wait_idle` waits for them (the tool calls it before exiting): a replica that
/// missed a write has it once the client, closed right after, is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_repairs_before_the_program_exits() {
    // Only the read may repair n2 here: no hints, no anti-entropy.
    let mut cluster = Cluster::start_tweaked(3, Limits::default(), Bounds::default(), |config| {
        config.anti_entropy_interval = Duration::ZERO;
        config.hint_batch = 0;
    })
    .await;
    cluster.stop(2).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    store.put("cart", b"apples".to_vec(), &CausalContext::empty()).await.unwrap();
    client.close();
    cluster.restart(2).await;
    cluster.settle().await;
    let raw = cluster.raw();
    let held_by_n2 = || async {
        let get = Request::Get { store: StoreName::default_store(), key: b"cart".to_vec() };
        matches!(raw.call(cluster.addrs[2], None, get).await, Ok(Response::State(Some(_))))
    };
    assert!(!held_by_n2().await, "n2 missed the write");

    let reader = cluster.client().await;
    let read = reader.store("default").await.unwrap().get("cart").await.unwrap();
    assert_eq!(values(&read), vec![b"apples".to_vec()]);
    assert!(reader.wait_idle(Duration::from_secs(5)).await, "the read's work ends");
    reader.close();
    drop(reader);
    let mut repaired = false;
    for _ in 0..100 {
        if held_by_n2().await {
            repaired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(repaired, "the stale replica was repaired");
    cluster.shutdown().await;
}

/// Issue 8, 3.5: what each store setting promises, measured (the figures in
/// `docs/consistency.md` come from this test's output). A read right after an acknowledged
/// write, through the smart client, in a healthy 3-node cluster: with R + W > N (`quorum`,
/// `strict`) it always sees the write; with R + W <= N (`eventual`) it may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_acknowledged_writes_as_each_setting_promises() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let settings = [
        ("quorum-store", StoreConfig::quorum()),
        ("strict-store", StoreConfig::strict()),
        ("eventual-store", StoreConfig::eventual()),
    ];
    const OPS: usize = 200;
    for (name, config) in settings {
        let name = StoreName::new(name).unwrap();
        client.create_store(&name, config).await.unwrap();
        let store = client.store(name.as_str()).await.unwrap();
        let mut missed = 0;
        for i in 0..OPS {
            let key = format!("key-{i}");
            let value = format!("value-{i}").into_bytes();
            store.put(&key, value.clone(), &CausalContext::empty()).await.unwrap();
            if values(&store.get(&key).await.unwrap()) != vec![value] {
                missed += 1;
            }
        }
        println!("{name} ({config}): {missed} of {OPS} reads right after an acknowledged write missed it");
        if config.r() + config.w() > config.n() {
            assert_eq!(missed, 0, "{name}: R + W > N reads its own writes");
        }
    }
    client.close();
    cluster.shutdown().await;
}

/// Regression (issue 7, 3.6): two blind writes of large values used to make a key whose state
/// no frame could carry: every later read failed and the first, acknowledged value was lost for
/// good. The second write is now refused, naming the limit, and the key stays readable and
/// resolvable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_would_make_a_key_unreadable_is_refused() {
    let cluster = Cluster::start_with(3, Limits { max_key: 100, max_value: 10_000 }).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    store.put("big", vec![b'a'; 6_000], &CausalContext::empty()).await.unwrap();
    let err = store.put("big", vec![b'b'; 6_000], &CausalContext::empty()).await.unwrap_err();
    assert!(matches!(&err, PutError::Refused(e) if e.kind == ErrorKind::TooLarge), "{err:?}");
    assert!(err.to_string().contains("replace its siblings"), "{err}");
    // Nothing changed: the first value reads back, and a write with its context replaces it.
    let read = store.get("big").await.unwrap();
    assert_eq!(values(&read), vec![vec![b'a'; 6_000]]);
    store.put("big", vec![b'b'; 6_000], &read.context).await.unwrap();
    assert_eq!(values(&store.get("big").await.unwrap()), vec![vec![b'b'; 6_000]]);
    // An empty key is refused as such.
    let err = store.put("", b"v".to_vec(), &CausalContext::empty()).await.unwrap_err();
    assert!(err.to_string().contains("key is empty"), "{err}");
    client.close();
    cluster.shutdown().await;
}

/// 3.4: a caller without a certificate cannot make a node hold more than its bounds: streams
/// that send slowly are cut off at the read deadline and free their room, a connection cannot
/// open more streams than allowed, connections from one address are capped, and other callers
/// are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_greedy_callers_are_bounded_and_others_are_served() {
    let bounds = Bounds {
        streams_per_connection: 4,
        connections_per_address: 3,
        read_deadline: Duration::from_millis(300),
        ..Bounds::default()
    };
    let cluster = Cluster::start_bounded(1, Limits::default(), bounds).await;
    let addr = cluster.addrs[0];
    let client = cluster.client().await;
    let create = StoreConfig::new(1, 1, 1, quickv_client::QuorumKind::Strict, ConflictPolicy::Siblings).unwrap();
    client.create_store(&StoreName::new("one").unwrap(), create).await.unwrap();
    let store = client.store("one").await.unwrap();

    // A greedy connection opens every stream it may and sends a few bytes on each, slowly.
    let raw = cluster.raw();
    let greedy = raw.endpoint().connect(addr, quickv_client::tls::NODE_SERVER_NAME).unwrap().await.unwrap();
    let mut slow = Vec::new();
    for _ in 0..4 {
        let (mut send, recv) = greedy.open_bi().await.unwrap();
        send.write_all(&[2, 0, 1]).await.unwrap();
        slow.push((send, recv));
    }
    let fifth = tokio::time::timeout(Duration::from_millis(100), greedy.open_bi()).await;
    assert!(fifth.is_err(), "a fifth stream opened");
    // Others are served meanwhile.
    store.put("k", b"v".to_vec(), &CausalContext::empty()).await.unwrap();
    assert_eq!(values(&store.get("k").await.unwrap()), vec![b"v".to_vec()]);
    // At the deadline the node stops reading the slow streams; their slots come back.
    for (send, _) in slow {
        let stopped = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        assert!(stopped.is_ok(), "a slow stream was not stopped at the deadline");
    }
    let again = tokio::time::timeout(Duration::from_secs(2), greedy.open_bi()).await;
    assert!(again.is_ok(), "slots did not come back");

    // Connections from one address: the client's and the greedy one are two of three.
    let third = raw.endpoint().connect(addr, quickv_client::tls::NODE_SERVER_NAME).unwrap().await;
    assert!(third.is_ok());
    let other = cluster.raw();
    let fourth = other.endpoint().connect(addr, quickv_client::tls::NODE_SERVER_NAME).unwrap().await;
    assert!(fourth.is_err(), "a fourth connection from one address was admitted");
    client.close();
    cluster.shutdown().await;
}

/// 3.4: `quickv store drop`: a dropped store stops existing on every node, its name is not
/// used again, and dropping an unknown store is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_store_is_gone_everywhere() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let name = StoreName::new("carts").unwrap();
    client.create_store(&name, StoreConfig::quorum()).await.unwrap();
    let store = client.store("carts").await.unwrap();
    store.put("k", b"v".to_vec(), &CausalContext::empty()).await.unwrap();
    client.drop_store(&name).await.unwrap();
    for _ in 0..100 {
        if cluster.running().all(|n| n.view().store(&name).is_none()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cluster.running().all(|n| n.view().store(&name).is_none() && n.view().was_dropped(&name)));
    let err = store.get("k").await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = client.create_store(&name, StoreConfig::quorum()).await.unwrap_err();
    assert!(err.to_string().contains("was dropped"), "{err}");
    let err = client.drop_store(&StoreName::new("nope").unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    client.drop_store(&name).await.unwrap();
    client.close();
    // Its data is deleted on every node: the replicas' engines hold nothing of it.
    let mut cluster = cluster;
    for i in 0..3 {
        cluster.stop(i).await;
        let data = cluster.dir.path().join(format!("n{i}")).join("data");
        let engine =
            quickv_server::storage::DurableEngine::open(&data, quickv_server::storage::SyncPolicy::Always).unwrap();
        let mut records = 0;
        for space in ["carts".to_owned(), quickv_server::storage::layout::space(&name)] {
            quickv_server::storage::Engine::scan(&engine, &space, &[], &mut |_, _| {
                records += 1;
                true
            })
            .unwrap();
        }
        assert_eq!(records, 0, "n{i} still holds records of the dropped store");
    }
    cluster.shutdown().await;
}

/// 3.9: racing creates of one name with different settings at two nodes (it used to tell both
/// callers "created" while the views quietly kept the smaller settings): exactly one is told
/// "created", the other `StoreConflict` naming both settings, and every node serves the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_store_creates_have_one_winner() {
    let cluster = Cluster::start(3).await;
    let raw = cluster.raw();
    let name = StoreName::new("carts").unwrap();
    let (a, b) = (StoreConfig::strict(), StoreConfig::eventual());
    let create = |config| Request::CreateStore { name: name.clone(), config };
    let (x, y) = tokio::join!(raw.call(cluster.addrs[1], None, create(a)), raw.call(cluster.addrs[2], None, create(b)));
    let answers = [x.unwrap(), y.unwrap()];
    let won: Vec<usize> = (0..2).filter(|&i| answers[i] == Response::Ack).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    let winner = [a, b][won[0]];
    let Response::Error(e) = &answers[1 - won[0]] else { panic!("{answers:?}") };
    assert_eq!(e.kind, ErrorKind::StoreConflict);
    assert!(e.message.contains(&a.to_string()) && e.message.contains(&b.to_string()), "{}", e.message);
    cluster.settle().await;
    for node in cluster.running() {
        assert_eq!(node.view().store(&name), Some(&winner));
    }
    raw.close();
    cluster.shutdown().await;
}

/// The hints each running node holds for `target`, as its status reports them (`None`: a node
/// did not answer).
async fn hints_for(cluster: &Cluster, raw: &quickv_client::transport::Transport, target: &NodeId) -> Option<u64> {
    let mut total = 0;
    for (i, addr) in cluster.addrs.iter().enumerate() {
        if cluster.nodes[i].is_none() {
            continue;
        }
        let Ok(Response::Status(report)) = raw.call(*addr, None, Request::Status).await else { return None };
        total += report.peer(target).map_or(0, |p| p.hints);
    }
    Some(total)
}

/// Issue 8, 2.1 and 2.2, on real QUIC and the durable engine: a write whose primary is stopped
/// goes to a fallback with a hint; once the primary is back, gossip shows it up and the fallback
/// hands the write back: the primary holds it with no read touching the key, and the hint is
/// removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hinted_write_reaches_its_primary_when_it_returns() {
    let mut cluster = Cluster::start(4).await;
    let client = cluster.client().await;
    let ring = client.view().ring().unwrap().clone();
    let n0 = NodeId::new("n0").unwrap();
    let key = (0..)
        .map(|i| format!("hinted-{i}"))
        .find(|k| !ring.preference_list(Token::of(k.as_bytes()), 3, 1).is_primary(&n0))
        .unwrap();
    let primary = ring.preference_list(Token::of(key.as_bytes()), 3, 1).primaries()[0].clone();
    cluster.stop(Cluster::index_of(&primary)).await;
    let store = client.store("default").await.unwrap();
    store.put(&key, b"held".to_vec(), &CausalContext::empty()).await.unwrap();
    let raw = cluster.raw();
    let mut held = 0;
    for _ in 0..100 {
        held = hints_for(&cluster, &raw, &primary).await.unwrap_or(0);
        if held > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held, 1, "a fallback holds the write for {primary}");
    client.close();
    cluster.restart(Cluster::index_of(&primary)).await;
    let at = cluster.addrs[Cluster::index_of(&primary)];
    let get = || Request::Get { store: StoreName::default_store(), key: key.clone().into_bytes() };
    let mut delivered = false;
    for _ in 0..300 {
        if let Ok(Response::State(Some(_))) = raw.call(at, None, get()).await {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(delivered, "{primary} received the hinted write within 15 s");
    let mut left = None;
    for _ in 0..100 {
        left = hints_for(&cluster, &raw, &primary).await;
        if left == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, Some(0), "the hint is removed once the primary acknowledged");
    let delivered: u64 = cluster.running().map(|n| n.stats().hints_delivered).sum();
    assert_eq!(delivered, 1);
    cluster.shutdown().await;
}

/// Issue 8, 4.2: a node started with a metrics address serves Prometheus metrics there:
/// requests and errors by kind, request latency histograms, its verdict and hints per peer, and
/// the node machine's counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_prometheus_metrics() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut cluster = Cluster::start(1).await;
    // A free port for the metrics of a second node.
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut config = support::config(
        cluster.dir.path(),
        1,
        "127.0.0.1:0".parse().unwrap(),
        vec![cluster.addrs[0]],
        Limits::default(),
    );
    config.metrics = Some(metrics_addr);
    let node = Node::start(config).await.unwrap();
    cluster.addrs.push(node.local_addr().unwrap());
    cluster.nodes.push(Some(node));
    cluster.settle().await;
    let raw = cluster.raw();
    let put = Request::CoordinatePut {
        store: StoreName::default_store(),
        key: b"k".to_vec(),
        write: Write::put(b"v".to_vec(), quickv_core::version::CausalContext::empty(), 1),
        minter: None,
    };
    assert!(matches!(raw.call(cluster.addrs[1], None, put).await, Ok(Response::State(Some(_)))));
    let unknown = Request::CoordinateGet { store: StoreName::new("nope").unwrap(), key: b"k".to_vec() };
    assert!(matches!(raw.call(cluster.addrs[1], None, unknown).await, Ok(Response::Error(_))));
    let scrape = || async {
        let mut stream = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        body
    };
    let mut body = String::new();
    for _ in 0..40 {
        body = scrape().await;
        if body.contains("quickv_peer_up") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for expected in [
        "HTTP/1.1 200",
        "quickv_requests_total{kind=\"coordinate_put\"} 1",
        "quickv_requests_total{kind=\"gossip\"}",
        "quickv_errors_total{kind=\"UnknownStore\"} 1",
        "quickv_request_seconds_bucket{kind=\"coordinate_put\",le=\"",
        "quickv_peer_up{peer=\"n0\"} 1",
        "quickv_hints_pending{peer=\"n0\"} 0",
        "quickv_coordinated_total 2",
        "quickv_tombstones_pending 0",
        "quickv_tombstones_collected_total 0",
    ] {
        assert!(body.contains(expected), "{expected} missing from:\n{body}");
    }
    let size = body.lines().find_map(|l| l.strip_prefix("quickv_storage_bytes ")).expect("the storage size");
    assert!(size.parse::<f64>().unwrap() > 0.0, "storage holds the write: {size}");
    cluster.shutdown().await;
}

/// Records written before the token-ordered layout (in the space named as the store, under
/// their bare keys) are moved when a node starts, and are served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_the_key_ordered_layout_are_moved_and_served() {
    use quickv_core::version::KeyRecord;
    use quickv_server::storage::{DurableEngine, Engine, SyncPolicy, record};
    let mut cluster = Cluster::start(3).await;
    for i in 0..3 {
        cluster.stop(i).await;
        let engine =
            DurableEngine::open(&cluster.dir.path().join(format!("n{i}")).join("data"), SyncPolicy::Always).unwrap();
        for k in 0..300u32 {
            let mut state = KeyRecord::default();
            let write = Write::put(format!("v{k}").into_bytes(), quickv_core::version::CausalContext::empty(), 1);
            state.apply(&NodeId::new("n0").unwrap(), &write, ConflictPolicy::Siblings).unwrap();
            let key = format!("old-{k}").into_bytes();
            engine.put("default", &key, &record::encode(&key, &state)).unwrap();
        }
    }
    for i in 0..3 {
        cluster.restart(i).await;
    }
    cluster.settle().await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    for k in 0..300u32 {
        let read = store.get(&format!("old-{k}")).await.unwrap();
        assert_eq!(values(&read), vec![format!("v{k}").into_bytes()], "old-{k}");
    }
    client.close();
    cluster.shutdown().await;
}
