//! Talking to peers: joining through a seed, spreading view changes, and the coordinator's
//! replica calls.
//!
//! Membership reaches every node in two ways: a node whose view changes sends it to every peer
//! at once, and every `sync_interval` each node exchanges views with the next peer in turn, so
//! a node that missed a change catches up within a few rounds. (Failure detection and the full
//! gossip protocol come later.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use quickv_client::Topology;
use quickv_client::drive::{self, NodeCaller};
use quickv_core::cluster::ClusterView;
use quickv_core::coordinator::ReplicaFailure;
use quickv_core::identity::NodeId;
use quickv_core::membership::NodeInfo;
use quickv_core::wire::{Request, Response};

use super::Shared;
use super::service::replica_op;

/// Sends the coordinator's requests: served locally when this node is the target, otherwise over
/// QUIC, routed with this node's ring.
pub(crate) struct PeerCaller {
    shared: Arc<Shared>,
    topology: Arc<Topology>,
    stale: AtomicBool,
}

impl PeerCaller {
    pub(crate) fn new(shared: Arc<Shared>) -> PeerCaller {
        let topology = shared.topology();
        PeerCaller { shared, topology, stale: AtomicBool::new(false) }
    }
}

impl NodeCaller for PeerCaller {
    async fn call(&self, to: NodeId, request: Request) -> Result<Response, ReplicaFailure> {
        if to == self.shared.id {
            return replica_op(&self.shared, request).await.map_err(|e| {
                if e.kind.is_retryable() { ReplicaFailure::Unavailable } else { ReplicaFailure::Refused(e) }
            });
        }
        let addr = self.topology.address(&to).ok_or(ReplicaFailure::Unavailable)?;
        self.shared.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let answer = self.shared.transport.call(addr, Some(self.topology.epoch()), request).await;
        drive::replica_answer(answer, &self.stale)
    }
}

/// Sends `view` to every other node, in the background.
pub(crate) fn broadcast(shared: Arc<Shared>, view: ClusterView) {
    for addr in peer_addresses(&shared, &view) {
        let (shared, view) = (shared.clone(), view.clone());
        tokio::spawn(async move {
            let _ = exchange(&shared, addr, view).await;
        });
    }
}

/// The addresses of every other node in `view`.
fn peer_addresses(shared: &Shared, view: &ClusterView) -> Vec<SocketAddr> {
    view.membership().nodes().filter(|n| n.id != shared.id).filter_map(|n| n.address.parse().ok()).collect()
}

/// Sends our view to `addr` and merges the answer.
async fn exchange(shared: &Arc<Shared>, addr: SocketAddr, view: ClusterView) -> Result<(), String> {
    match shared.transport.call(addr, None, Request::Sync { view }).await {
        Ok(Response::Cluster(theirs)) => {
            shared.update_view(|mine| match mine.merge(&theirs) {
                Ok(changed) => (changed, ()),
                Err(e) => {
                    tracing::warn!("peer {addr} has an incompatible view: {e}");
                    (false, ())
                }
            });
            Ok(())
        }
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Joins through the seeds (retrying until one answers), then exchanges views with one peer per
/// `sync_interval`, in turn.
pub(crate) async fn join_and_sync(shared: Arc<Shared>, me: NodeInfo) {
    let interval = shared.config.sync_interval;
    let seeds = shared.config.seeds.clone();
    let mut joined = seeds.is_empty();
    let mut turn = 0usize;
    loop {
        if !joined {
            for &seed in &seeds {
                match shared.transport.call(seed, None, Request::Join { node: me.clone() }).await {
                    Ok(Response::Cluster(view)) => {
                        shared.update_view(|mine| match mine.merge(&view) {
                            Ok(changed) => (changed, ()),
                            Err(e) => {
                                tracing::error!("seed {seed} belongs to another cluster: {e}");
                                (false, ())
                            }
                        });
                        tracing::info!(node = %shared.id, %seed, "joined the cluster");
                        joined = true;
                        break;
                    }
                    Ok(other) => tracing::warn!("seed {seed} answered {other:?}"),
                    Err(e) => tracing::debug!("seed {seed} not reachable yet: {e}"),
                }
            }
        } else {
            let view = shared.view();
            let peers = peer_addresses(&shared, &view);
            if !peers.is_empty() {
                turn = turn.wrapping_add(1);
                let _ = exchange(&shared, peers[turn % peers.len()], view).await;
            }
        }
        tokio::time::sleep(interval).await;
    }
}
