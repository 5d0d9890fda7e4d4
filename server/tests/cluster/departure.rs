//! Nodes that go, over real QUIC (issue 9, 2.3): `leave` drains a live node, `remove` takes out
//! one gone for good, and every acknowledged write reads back after each.

use std::time::Duration;

use quickv_client::{CausalContext, Client, NodeChangeError, NodeStatus};
use quickv_core::identity::NodeId;
use quickv_server::node::StartError;

use crate::support::Cluster;

/// Waits (at most 20 s) until the client's view has the ring `ids` with no change under way.
async fn wait_for_ring(client: &Client, ids: &[&str]) {
    for _ in 0..200 {
        client.refresh().await.unwrap();
        let view = client.view();
        let ring: Vec<String> =
            view.ring().map(|r| r.nodes().iter().map(|n| n.id.as_str().to_owned()).collect()).unwrap_or_default();
        if view.transition().is_none() && ring == ids {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the ring did not become {ids:?}: {:?}", client.view().ring().map(|r| r.nodes().to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leaves_another_is_removed_and_every_write_reads_back() {
    let mut cluster = Cluster::start(4).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    for i in 0..60 {
        store.put(format!("k{i}"), vec![i as u8; 200], &CausalContext::empty()).await.unwrap();
    }
    let (n2, n3) = (NodeId::new("n2").unwrap(), NodeId::new("n3").unwrap());
    // n3 leaves: it hands its partitions over, then shows as left.
    client.leave_node(&n3).await.unwrap();
    wait_for_ring(&client, &["n0", "n1", "n2"]).await;
    let mut left = false;
    for _ in 0..100 {
        client.refresh().await.unwrap();
        left = client.view().membership().node(&n3).is_some_and(|n| n.status == NodeStatus::Removed);
        if left {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left, "n3 marked itself left");
    for i in 0..60 {
        assert_eq!(store.get(format!("k{i}")).await.unwrap().values, vec![vec![i as u8; 200].into()], "k{i}");
    }
    // Its folder does not start again.
    cluster.stop(3).await;
    let mut config =
        crate::support::config(cluster.dir.path(), 3, cluster.addrs[3], vec![cluster.addrs[0]], cluster.limits);
    config.bounds = cluster.bounds;
    match quickv_server::node::Node::start(config).await {
        Err(StartError::Left(e)) => assert!(e.to_string().contains("has left the cluster"), "{e}"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a node that left started again"),
    }
    // n2 is up: a removal is refused, naming leave. Stopped, it is removed once held down.
    match client.remove_node(&n2).await {
        Err(NodeChangeError::Refused(r)) => assert!(r.message.contains("leave"), "{r}"),
        other => panic!("a removal of a live node: {other:?}"),
    }
    cluster.stop(2).await;
    let mut removed = false;
    for _ in 0..100 {
        match client.remove_node(&n2).await {
            Ok(()) => {
                removed = true;
                break;
            }
            Err(NodeChangeError::Refused(r)) if r.message.contains("is up") => {}
            Err(e) => panic!("removal failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(removed, "n2 was removed once held down");
    wait_for_ring(&client, &["n0", "n1"]).await;
    for i in 0..60 {
        assert_eq!(store.get(format!("k{i}")).await.unwrap().values, vec![vec![i as u8; 200].into()], "k{i}");
    }
    let unknown = client.remove_node(&NodeId::new("n9").unwrap()).await.unwrap_err();
    assert!(matches!(unknown, NodeChangeError::UnknownNode(_)), "{unknown}");
    client.close();
    cluster.shutdown().await;
}

/// Issue 9, 2.5: while a ring change is under way `locate` names the key's pending owners (the
/// next ring's replicas that are not primaries yet) and what each holds: a write made during the
/// change reaches them. Once the change is committed they are primaries and nobody is pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_shows_a_keys_pending_owners_during_a_ring_change() {
    use quickv_client::Holding;
    use quickv_core::token::Token;
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    // With n2 stopped, the change that brings n3 in waits for it (a current replica of every
    // partition n3 gains): it stays under way.
    cluster.stop(2).await;
    cluster.add_node().await;
    let n3 = NodeId::new("n3").unwrap();
    let mut under_way = false;
    for _ in 0..200 {
        client.refresh().await.unwrap();
        if client.view().transition().is_some() {
            under_way = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(under_way, "the change that brings n3 in started");
    let view = client.view();
    let config = store.config();
    let gains = |key: &String| {
        view.write_plan(Token::of(key.as_bytes()), &config, 0)
            .is_some_and(|plan| plan.joint.is_some() && plan.prefs.primaries().contains(&n3))
    };
    let key = (0..).map(|i| format!("cart{i}")).find(gains).expect("a key n3 gains");
    store.put(&key, b"apples".to_vec(), &CausalContext::empty()).await.unwrap();
    let one = Holding::Versions { count: 1, tombstone: false };
    let mut location = None;
    for _ in 0..100 {
        let l = store.locate(&key).await.unwrap();
        if l.pending.iter().any(|(id, holding)| *id == n3 && *holding == one) {
            location = Some(l);
            break;
        }
        location = Some(l);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let location = location.unwrap();
    assert_eq!(location.pending, [(n3.clone(), one.clone())], "{location:?}");
    assert!(location.primaries.iter().all(|(id, _)| *id != n3), "{location:?}");

    // n2 back: the change completes, and n3 is a primary of the key holding the write.
    cluster.restart(2).await;
    wait_for_ring(&client, &["n0", "n1", "n2", "n3"]).await;
    let location = store.locate(&key).await.unwrap();
    assert!(location.pending.is_empty(), "{location:?}");
    assert!(location.primaries.contains(&(n3, one)), "{location:?}");
    assert_eq!(store.get(&key).await.unwrap().values, vec![b"apples".to_vec().into()]);
    client.close();
    cluster.shutdown().await;
}
