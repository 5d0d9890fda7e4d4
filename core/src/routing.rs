//! Routing: a cluster view ready to route requests with, as the smart client does (natively and
//! in wasm): each node's socket address and each key's preference list, from core's ring.
//!
//! ```
//! use quickv_core::{cluster::ClusterView, membership::NodeInfo, routing::RoutingTable};
//!
//! let mut view = ClusterView::new(8);
//! let a = NodeInfo::new("a", "127.0.0.1:7101", "z1", 1)?;
//! view.upsert_node(a.clone())?;
//! view.advance_ring(&a.id)?; // as node a, the claimant, does
//! let table = RoutingTable::new(view);
//! let prefs = table.preference_list(b"cart:42", 3, 0).expect("the cluster has a ring");
//! let first = &prefs.primaries()[0];
//! assert_eq!(table.address(first), Some("127.0.0.1:7101".parse()?));
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use alloc::collections::BTreeMap;
use core::net::SocketAddr;

use crate::cluster::ClusterView;
use crate::identity::NodeId;
use crate::ring::PreferenceList;
use crate::token::Token;

/// A cluster view ready for routing.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    view: ClusterView,
    addresses: BTreeMap<NodeId, SocketAddr>,
}

impl RoutingTable {
    /// Routing data for `view`. Nodes whose address is not an `IP:port` are left out.
    pub fn new(view: ClusterView) -> RoutingTable {
        let addresses =
            view.membership().nodes().filter_map(|n| Some((n.id.clone(), n.address.parse().ok()?))).collect();
        RoutingTable { view, addresses }
    }

    /// The view.
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// The epoch of the ring routed with (0 before the cluster has a ring).
    pub fn epoch(&self) -> u64 {
        self.view.ring().map_or(0, |r| r.epoch())
    }

    /// The version of the ring routed with, as routed requests carry it: during a ring change
    /// the change's ([`ClusterView::routing_version`]; replicas answer `StaleRing` to any
    /// other). `None` before the cluster has a ring.
    pub fn ring_version(&self) -> Option<crate::ring::RingVersion> {
        self.view.routing_version()
    }

    /// A node's address.
    pub fn address(&self, node: &NodeId) -> Option<SocketAddr> {
        self.addresses.get(node).copied()
    }

    /// The node at `address`, if the view has one there.
    pub fn node_at(&self, address: SocketAddr) -> Option<NodeId> {
        self.addresses.iter().find(|(_, a)| **a == address).map(|(id, _)| id.clone())
    }

    /// Every known node address, by node id.
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addresses.values().copied()
    }

    /// The preference list of `key`: `n` replicas then up to `fallbacks` stand-ins; `None`
    /// before the cluster has a ring.
    pub fn preference_list(&self, key: &[u8], n: usize, fallbacks: usize) -> Option<PreferenceList> {
        Some(self.view.ring()?.preference_list(Token::of(key), n, fallbacks))
    }

    /// The preference list requests of `key` in a store with `config` are routed with: its
    /// replicas, then up to `fallbacks` stand-ins and, while a ring change is under way, a
    /// sloppy store's pending owners (see [`ClusterView::read_preferences`]).
    pub fn preferences(
        &self,
        key: &[u8],
        config: &crate::store::StoreConfig,
        fallbacks: usize,
    ) -> Option<PreferenceList> {
        self.view.read_preferences(Token::of(key), config, fallbacks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::NodeInfo;
    use crate::store::{StoreConfig, StoreName};

    /// Regression (issue 9, 2.1): clients routed with the current ring's version during a ring
    /// change, which every replica (at the change's version) answered `StaleRing`, refresh after
    /// refresh, until the change was committed.
    #[test]
    fn during_a_ring_change_requests_are_routed_with_the_changes_version() {
        let mut view = ClusterView::new(6);
        for i in 0..3 {
            view.upsert_node(NodeInfo::new(&alloc::format!("n{i}"), "127.0.0.1:7101", "z", 1).unwrap()).unwrap();
        }
        view.create_store(StoreName::default_store(), StoreConfig::quorum()).unwrap();
        let n0 = NodeId::new("n0").unwrap();
        view.advance_ring(&n0).unwrap();
        assert_eq!(RoutingTable::new(view.clone()).ring_version(), view.ring().map(|r| r.version()));
        view.upsert_node(NodeInfo::new("n3", "127.0.0.1:7104", "z", 1).unwrap()).unwrap();
        view.advance_ring(&n0).unwrap();
        let next = view.transition().expect("a change under way").next.version();
        assert_eq!(RoutingTable::new(view).ring_version(), Some(next));
    }
}
