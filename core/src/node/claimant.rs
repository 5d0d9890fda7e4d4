//! The claimant's ring changes (issue 9, 1.1 and 1.2): the one node that moves the ring.
//!
//! After every change of its view (and every sync interval) a node that has joined and is the
//! view's [claimant](crate::cluster::ClusterView::claimant) moves the ring to the membership
//! ([`ClusterView::advance_ring`](crate::cluster::ClusterView::advance_ring)) and gossips it to every peer at once; every other node waits
//! for the claimant's ring. A node configured to wait for an operator
//! ([`automatic_ring_changes`](super::NodeConfig::automatic_ring_changes) off) moves it only when
//! asked with [`Request::CommitRing`](crate::wire::Request::CommitRing) naming the ring its plan moves to
//! ([`ClusterView::plan`](crate::cluster::ClusterView::plan)), so a plan that changed since it was looked at is not applied.

use alloc::format;
use core::time::Duration;

use super::{Event, Node};
use crate::ring::RingVersion;
use crate::wire::{ErrorKind, ErrorReply, Response};

impl Node {
    /// Moves the ring if this node has joined, is the claimant, moves rings on its own, and the
    /// membership asks for it. Returns whether the ring moved (the caller saves and spreads
    /// the view).
    pub(super) fn claim_ring(&mut self) -> bool {
        // A change under way is committed once its gainers have received their partitions,
        // whether or not starting one waits for an operator.
        let allowed = self.config.automatic_ring_changes || self.view.transition().is_some();
        self.joined && allowed && self.advance_ring()
    }

    /// A caller's commit of the plan that moves the ring to `plan`: applied here if this node
    /// is the claimant and its plan still moves there; answered once the new ring is saved.
    pub(super) fn commit_ring(
        &mut self,
        now: Duration,
        stream: u64,
        id: u64,
        plan: RingVersion,
    ) -> Result<Option<Response>, ErrorReply> {
        if !self.joined {
            return Err(ErrorReply::new(ErrorKind::Unavailable, "this node is still joining the cluster"));
        }
        match self.view.claimant() {
            Some(claimant) if *claimant == self.id => {}
            Some(claimant) => {
                let address = self.view.membership().node(claimant).map(|n| n.address.clone()).unwrap_or_default();
                return Err(ErrorReply::new(
                    ErrorKind::Unavailable,
                    format!("ring changes are decided by the claimant {claimant} at {address}: send the commit there"),
                ));
            }
            None => return Err(ErrorReply::new(ErrorKind::Unavailable, "the cluster has no members yet")),
        }
        if let Some(t) = self.view.transition() {
            return Err(ErrorReply::new(
                ErrorKind::Unavailable,
                format!(
                    "a ring change to epoch {} is under way ({} of {} nodes have received their partitions): commit the next once it is done",
                    t.next.epoch(),
                    t.received.len(),
                    t.gainers.len()
                ),
            ));
        }
        let next = self.view.next_ring().map_err(|e| ErrorReply::new(ErrorKind::Internal, format!("{e}")))?;
        match next.map(|ring| ring.version()) {
            None => {
                Err(ErrorReply::new(ErrorKind::StaleRing, "no ring change is pending: the ring matches the membership"))
            }
            Some(pending) if pending != plan => Err(ErrorReply::new(
                ErrorKind::StaleRing,
                format!(
                    "the plan changed since it was made (it now moves to ring {pending}, not {plan}): look at it again"
                ),
            )),
            Some(_) => {
                let moved = self.advance_ring();
                Ok(self.ack_once_saved(now, stream, id, moved))
            }
        }
    }

    /// Moves the ring as the claimant, reporting it. Returns whether it moved.
    fn advance_ring(&mut self) -> bool {
        match self.view.advance_ring(&self.id) {
            Ok(moved) => {
                if let (true, Some(version)) = (moved, self.view.routing_version()) {
                    let (nodes, under_way) = match self.view.transition() {
                        Some(t) => (t.next.nodes().len(), true),
                        None => (self.view.ring().map_or(0, |r| r.nodes().len()), false),
                    };
                    self.events.push_back(Event::RingMoved { epoch: version.epoch, nodes, under_way });
                }
                moved
            }
            Err(e) => {
                self.events.push_back(Event::RingRefused { reason: format!("{e}") });
                false
            }
        }
    }
}
