//! The client's picture of the cluster: a [`ClusterView`] plus each node's socket address.

use std::collections::HashMap;
use std::net::SocketAddr;

use quickv_core::cluster::ClusterView;
use quickv_core::identity::NodeId;
use quickv_core::ring::PreferenceList;
use quickv_core::token::Token;

/// A cluster view ready for routing.
#[derive(Clone, Debug)]
pub struct Topology {
    view: ClusterView,
    addresses: HashMap<NodeId, SocketAddr>,
}

impl Topology {
    /// Routing data for `view`. Nodes whose address is not an `IP:port` are left out.
    pub fn new(view: ClusterView) -> Topology {
        let addresses =
            view.membership().nodes().filter_map(|n| Some((n.id.clone(), n.address.parse().ok()?))).collect();
        Topology { view, addresses }
    }

    /// The view.
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// The epoch of the ring routed with (0 before the cluster has a ring).
    pub fn epoch(&self) -> u64 {
        self.view.ring().map_or(0, |r| r.epoch())
    }

    /// A node's address.
    pub fn address(&self, node: &NodeId) -> Option<SocketAddr> {
        self.addresses.get(node).copied()
    }

    /// Every known node address.
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addresses.values().copied()
    }

    /// The preference list of `key`: `n` replicas then up to `fallbacks` stand-ins.
    pub fn preference_list(&self, key: &[u8], n: usize, fallbacks: usize) -> Option<PreferenceList> {
        Some(self.view.ring()?.preference_list(Token::of(key), n, fallbacks))
    }
}
