//! Nodes that go (issue 9, 2.3): a live node drained by `quickv node leave`, a node gone for good
//! removed by `quickv node remove`.
//!
//! **Leave.** The node asked to leave ([`Request::Leave`], sent to the node itself) raises its
//! own entry to [`NodeStatus::Leaving`]. It no longer counts as a ring member, so the claimant
//! starts a ring change without it: its partitions get pending owners, which receive them from
//! their current replicas (the leaving node among them) before the change is committed, as for a
//! join. Once the committed ring no longer holds it, no change is under way and it has handed
//! back every hint it held, the node marks its own entry [`NodeStatus::Removed`] (shown as
//! `left`) and reports [`Event::Left`]: it owns nothing, holds nothing anybody needs, and may be
//! stopped.
//!
//! **Remove.** Any node asked to remove another ([`Request::RemoveNode`]) writes the other's
//! entry as [`NodeStatus::Removed`], unless its failure detector holds the other up (a live node
//! is drained with a leave instead). The ring change that follows re-replicates the removed
//! node's partitions from the surviving replicas: a removed node is no source a gainer waits for
//! (`anti_entropy::receive`), nor a gainer the claimant waits for.
//!
//! Either way the removal is final: it wins every merge (see [`crate::membership`]), a node that
//! finds itself removed stops taking part ([`Node::has_left`]), and one whose saved view says so
//! refuses to start ([`super::NodeError::Left`]). It comes back only as a new node, with a new id.

use alloc::format;
use core::time::Duration;

use super::{Event, Node};
use crate::identity::NodeId;
use crate::liveness::PeerState;
use crate::membership::NodeStatus;
use crate::wire::{ErrorKind, ErrorReply, Response};

impl Node {
    /// Whether this node has left the cluster (or was removed): it owns nothing, takes part in
    /// nothing, and may be stopped.
    pub fn has_left(&self) -> bool {
        self.view.is_removed(&self.id)
    }

    /// A caller asks `node` to leave; only the node itself takes the request. Answered once its
    /// `Leaving` entry is saved (at once if it is already leaving).
    pub(super) fn leave(
        &mut self,
        now: Duration,
        stream: u64,
        id: u64,
        node: NodeId,
    ) -> Result<Option<Response>, ErrorReply> {
        if node != self.id {
            let address = self.view.membership().node(&node).map(|n| n.address.clone());
            return Err(match address {
                Some(address) => ErrorReply::new(
                    ErrorKind::Unavailable,
                    format!("node {node} leaves when asked itself: send the leave to {address}"),
                ),
                None => unknown_node(&node),
            });
        }
        self.departure_allowed()?;
        match self.view.membership().node(&self.id).map(|n| n.status) {
            Some(NodeStatus::Leaving) => return Ok(Some(Response::Ack)),
            Some(NodeStatus::Removed) => return Err(has_left_already(&self.id)),
            _ => {}
        }
        self.last_member_check(&node)?;
        let changed = self.set_own_status(NodeStatus::Leaving);
        Ok(self.ack_once_saved(now, stream, id, changed))
    }

    /// A caller asks this node to remove `node`, gone for good. Answered once the removal is
    /// saved here (gossip spreads it).
    pub(super) fn remove_node(
        &mut self,
        now: Duration,
        stream: u64,
        id: u64,
        node: NodeId,
    ) -> Result<Option<Response>, ErrorReply> {
        self.departure_allowed()?;
        let Some(entry) = self.view.membership().node(&node).cloned() else { return Err(unknown_node(&node)) };
        if entry.status == NodeStatus::Removed {
            return Ok(Some(Response::Ack));
        }
        if node == self.id {
            return Err(ErrorReply::new(
                ErrorKind::NotPermitted,
                format!("node {node} cannot remove itself: use `quickv node leave {node}` to drain it"),
            ));
        }
        if self.liveness.state(&node) == PeerState::Up {
            return Err(ErrorReply::new(
                ErrorKind::NotPermitted,
                format!(
                    "node {node} at {} is up: drain it with `quickv node leave {node}`, or stop it and remove it once the cluster holds it down",
                    entry.address
                ),
            ));
        }
        self.last_member_check(&node)?;
        let removed = crate::membership::NodeInfo {
            version: entry.version.saturating_add(1),
            status: NodeStatus::Removed,
            ..entry
        };
        let changed = self.view.upsert_node(removed).unwrap_or(false);
        Ok(self.ack_once_saved(now, stream, id, changed))
    }

    /// After the view changed, and every sync interval: a leaving node whose leave is complete
    /// (the committed ring leaves it out, no change is under way, no hint left to hand back)
    /// marks itself removed and reports it.
    pub(super) fn finish_leaving(&mut self, now: Duration) {
        let leaving = self.view.membership().node(&self.id).is_some_and(|n| n.status == NodeStatus::Leaving);
        let in_ring = self.view.ring().is_some_and(|r| r.nodes().iter().any(|n| n.id == self.id));
        if !leaving || in_ring || self.view.transition().is_some() || !self.hints.is_empty() {
            return;
        }
        if self.set_own_status(NodeStatus::Removed) {
            self.view_changed(now);
        }
    }

    /// Reports, once, that this node found itself removed.
    pub(super) fn note_left(&mut self) {
        if self.has_left() && !self.left_reported {
            self.left_reported = true;
            self.events.push_back(Event::Left);
        }
    }

    /// Raises this node's own entry to `status`. Returns whether the view changed.
    fn set_own_status(&mut self, status: NodeStatus) -> bool {
        self.change_own_entry(|entry| core::mem::replace(&mut entry.status, status) != status)
    }

    /// A node still joining, or that left, decides no departure.
    fn departure_allowed(&self) -> Result<(), ErrorReply> {
        if !self.joined {
            return Err(ErrorReply::new(ErrorKind::Unavailable, "this node is still joining the cluster"));
        }
        if self.has_left() {
            return Err(has_left_already(&self.id));
        }
        Ok(())
    }

    /// The last member that owns partitions cannot go: the cluster's data would have nowhere to
    /// live.
    fn last_member_check(&self, node: &NodeId) -> Result<(), ErrorReply> {
        if self.view.membership().ring_members().all(|n| n.id == *node) {
            return Err(ErrorReply::new(
                ErrorKind::NotPermitted,
                format!("node {node} is the cluster's last member: add another node before it goes"),
            ));
        }
        Ok(())
    }
}

fn unknown_node(node: &NodeId) -> ErrorReply {
    ErrorReply::new(ErrorKind::NotPermitted, format!("there is no node {node} in the cluster"))
}

fn has_left_already(node: &NodeId) -> ErrorReply {
    ErrorReply::new(
        ErrorKind::NotPermitted,
        format!("node {node} has left the cluster: it can be stopped, and joins again only as a new node (a new id)"),
    )
}
