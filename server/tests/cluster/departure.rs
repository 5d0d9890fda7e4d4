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
