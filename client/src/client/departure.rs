//! Nodes that go (`quickv node leave` and `quickv node remove`; issue 9, 2.3).

use quickv_core::identity::NodeId;
use quickv_core::wire::{Request, Response};

use super::Client;
use crate::error::{NodeChangeError, RefreshError};

impl Client {
    /// Drains `node`: asks it to hand every partition to its new owners and then leave the
    /// cluster. Returns once the node saved its leaving entry; the transfer goes on in the
    /// background (`status` shows it `leaving`, then `left`, when it may be stopped).
    pub async fn leave_node(&self, node: &NodeId) -> Result<(), NodeChangeError> {
        self.inner.refresh().await?;
        let topology = self.inner.topology();
        let Some(addr) = topology.address(node) else { return Err(NodeChangeError::UnknownNode(node.clone())) };
        match self.inner.transport.call(addr, None, Request::Leave { node: node.clone() }).await {
            Ok(Response::Ack) => {
                let _ = self.inner.refresh().await;
                Ok(())
            }
            Ok(Response::Error(e)) => Err(NodeChangeError::Refused(e.into_refusal())),
            Ok(other) => Err(unreachable(addr, format!("unexpected answer {other:?}"))),
            Err(e) => Err(unreachable(addr, e.to_string())),
        }
    }

    /// Removes `node`, gone for good: its partitions are re-replicated from the surviving
    /// replicas. Asks the members in turn until one takes it (a member that holds `node` up
    /// refuses: drain a live node with [`leave_node`](Self::leave_node)). Returns once that
    /// member saved the removal.
    pub async fn remove_node(&self, node: &NodeId) -> Result<(), NodeChangeError> {
        self.inner.refresh().await?;
        let topology = self.inner.topology();
        let view = topology.view();
        if view.membership().node(node).is_none() {
            return Err(NodeChangeError::UnknownNode(node.clone()));
        }
        let mut failures = Vec::new();
        let others = view.membership().nodes().filter(|n| n.id != *node && !view.is_removed(&n.id));
        for addr in others.filter_map(|n| topology.address(&n.id)) {
            match self.inner.transport.call(addr, None, Request::RemoveNode { node: node.clone() }).await {
                Ok(Response::Ack) => {
                    let _ = self.inner.refresh().await;
                    return Ok(());
                }
                Ok(Response::Error(e)) if !e.kind.is_retryable() => {
                    return Err(NodeChangeError::Refused(e.into_refusal()));
                }
                Ok(other) => failures.push((addr, format!("{other:?}"))),
                Err(e) => failures.push((addr, e.to_string())),
            }
        }
        Err(NodeChangeError::Unreachable(RefreshError::Unreachable(failures)))
    }
}

fn unreachable(addr: std::net::SocketAddr, why: String) -> NodeChangeError {
    NodeChangeError::Unreachable(RefreshError::Unreachable(vec![(addr, why)]))
}
