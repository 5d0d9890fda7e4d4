//! Ring changes looked at before they take effect, and committed (`quickv cluster plan` and
//! `quickv cluster commit`; issue 9, 1.2).

use std::collections::BTreeMap;

use quickv_core::identity::NodeId;
use quickv_core::liveness::TransferReport;
use quickv_core::ring::RingPlan;
use quickv_core::wire::{Request, Response};

use super::Client;
use crate::error::{CommitRingError, RefreshError};

/// A ring change the claimant would make now, with what it moves.
#[derive(Clone, Debug)]
pub struct PlannedChange {
    /// Partitions each node holds a replica of before and after, gains and loses, for the
    /// largest N of the cluster's stores.
    pub plan: RingPlan,
    /// The node that applies it.
    pub claimant: NodeId,
    /// Whether it is under way already (its new replicas are receiving their partitions), with
    /// the gainers that have received theirs and all of them; `None`: it waits for a commit, or
    /// applies itself at the claimant's next step.
    pub under_way: Option<(usize, usize)>,
    /// The bytes each member's storage holds, as the node last measured it (`None`: it did not
    /// answer, or has not measured yet).
    pub stored_bytes: BTreeMap<NodeId, Option<u64>>,
}

impl PlannedChange {
    /// About how many bytes `node` receives: the partitions it gains, each the average size of
    /// a partition replica today (the bytes the nodes store over the replicas they hold). An
    /// estimate: keys are not spread evenly, and storage counts its own overhead.
    pub fn bytes_to_receive(&self, node: &NodeId) -> u64 {
        let replicas: usize = self.plan.nodes.iter().map(|n| n.before).sum();
        let stored: u64 = self.stored_bytes.values().flatten().sum();
        let gained = self.plan.nodes.iter().find(|n| n.id == *node).map_or(0, |n| n.gained);
        if replicas == 0 { 0 } else { (stored as u128 * gained as u128 / replicas as u128) as u64 }
    }
}

impl Client {
    /// The ring change under way, or else the one pending at the claimant: `None` when the ring
    /// matches the membership.
    /// Fetches the view first, and each member's stored bytes.
    pub async fn plan_ring_change(&self) -> Result<Option<PlannedChange>, RefreshError> {
        self.inner.refresh().await?;
        let topology = self.inner.topology();
        let view = topology.view();
        let n = view.stores().map(|(_, config)| config.n()).max().unwrap_or(3);
        let plan = match view.plan(n) {
            Ok(Some(plan)) => plan,
            // A view that cannot make its next ring (more members than partitions) has no plan
            // a commit could apply; the claimant reports why in its log.
            Ok(None) | Err(_) => return Ok(None),
        };
        let Some(claimant) = view.claimant().cloned() else { return Ok(None) };
        let mut stored_bytes = BTreeMap::new();
        for node in view.membership().nodes() {
            let bytes = match topology.address(&node.id) {
                Some(addr) => match self.inner.transport.call(addr, None, Request::Status).await {
                    Ok(Response::Status(report)) => report.stored_bytes,
                    _ => None,
                },
                None => None,
            };
            stored_bytes.insert(node.id.clone(), bytes);
        }
        let under_way = view.transition().map(|t| (t.received.len(), t.gainers.len()));
        Ok(Some(PlannedChange { plan, claimant, under_way, stored_bytes }))
    }

    /// How far each node gaining partitions in the ring change under way (in this client's
    /// view) has received them, as each says (`None`: it did not answer, or reports none, for
    /// example because it has received them all). Empty when no change is under way.
    pub async fn transfers(&self) -> BTreeMap<NodeId, Option<TransferReport>> {
        let topology = self.inner.topology();
        let Some(t) = topology.view().transition() else { return BTreeMap::new() };
        let mut out = BTreeMap::new();
        for gainer in t.gainers.iter().filter(|g| !t.received.contains(*g)) {
            let report = match topology.address(gainer) {
                Some(addr) => match self.inner.transport.call(addr, None, Request::Status).await {
                    Ok(Response::Status(report)) => report.transfer,
                    _ => None,
                },
                None => None,
            };
            out.insert(gainer.clone(), report);
        }
        out
    }

    /// Applies `change` (from [`plan_ring_change`](Self::plan_ring_change)) at the claimant,
    /// which refuses it if its plan moved on since (`StaleRing`: look at the plan again).
    /// Returns once the claimant saved the new ring; refreshes the view.
    pub async fn commit_ring_change(&self, change: &PlannedChange) -> Result<(), CommitRingError> {
        let topology = self.inner.topology();
        let Some(addr) = topology.address(&change.claimant) else {
            return Err(CommitRingError::Unreachable(RefreshError::Unreachable(Vec::new())));
        };
        let request = Request::CommitRing { plan: change.plan.next };
        match self.inner.transport.call(addr, None, request).await {
            Ok(Response::Ack) => {
                let _ = self.inner.refresh().await;
                Ok(())
            }
            Ok(Response::Error(e)) => Err(CommitRingError::Refused(e.into_refusal())),
            Ok(other) => Err(CommitRingError::Unreachable(RefreshError::Unreachable(vec![(
                addr,
                format!("unexpected answer {other:?}"),
            )]))),
            Err(e) => Err(CommitRingError::Unreachable(RefreshError::Unreachable(vec![(addr, e.to_string())]))),
        }
    }
}
