//! Keeping the cluster view in step: joining through seeds, gossip, and each peer's liveness.
//!
//! A node without seeds starts a cluster. A node with seeds sends its entry to every seed each
//! [`sync_interval`](super::NodeConfig::sync_interval) until one answers with its view. Once in,
//! every interval the node raises its heartbeat and runs a gossip round with one peer chosen at
//! random ([`crate::gossip`]: digests first, then only what differs), and recomputes its verdict
//! on each peer ([`crate::liveness`]), reporting changes as [`Event::PeerState`]. A change made
//! here (a join this node accepted, a store created or dropped through it) is gossiped to every
//! peer at once; a change learnt from a peer spreads by the rounds. Views merge by the laws of
//! [`ClusterView::merge`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use alloc::collections::BTreeSet;

use super::{Destination, Event, IoId, Node, Purpose};
use crate::cluster::{ClusterView, ViewError};
use crate::coordinator::ReplicaFailure;
use crate::gossip::GossipDigest;
use crate::identity::{CertificateDigest, NodeId};
use crate::membership::{NodeInfo, NodeStatus};
use crate::wire::{ErrorKind, ErrorReply, Request, Response};

impl Node {
    /// Applies `change` to the view; if it changed, saves it, tells every peer and reports it.
    pub(super) fn update_view(&mut self, now: Duration, change: impl FnOnce(&mut ClusterView) -> bool) -> bool {
        let changed = change(&mut self.view);
        if changed {
            self.view_changed(now);
        }
        changed
    }

    /// After the view changed here: saves it, gossips with every peer and reports it. Returns
    /// the id of the save.
    pub(super) fn view_changed(&mut self, now: Duration) -> IoId {
        let save = self.view_learnt();
        for peer in self.peers() {
            self.gossip_with(now, &peer);
        }
        save
    }

    /// After the view changed by a peer's word: saves it and reports it (gossip spreads it on).
    fn view_learnt(&mut self) -> IoId {
        let save = self.save_view();
        self.purge_dropped();
        self.events.push_back(Event::ViewChanged);
        save
    }

    /// Takes a node's entry from its join: the entry must name the certificate the node
    /// presented, and may not take an id held by a node with another certificate (3.2).
    pub(super) fn join(
        &mut self,
        now: Duration,
        peer: Option<CertificateDigest>,
        node: NodeInfo,
    ) -> Result<(), ErrorReply> {
        // `peer` is the certificate presented (a node's: checked before); an entry without one,
        // or with another, is refused.
        if node.certificate != peer {
            return Err(ErrorReply::new(
                ErrorKind::NotPermitted,
                format!("node {} must join with the certificate it presents", node.id),
            ));
        }
        let mut refused = None;
        self.update_view(now, |view| {
            view.upsert_node(node).unwrap_or_else(|e| {
                refused = Some(e);
                false
            })
        });
        match refused {
            Some(ViewError::IdTaken(taken)) => {
                let reply = ErrorReply::new(ErrorKind::NodeIdTaken, format!("{taken}"));
                self.events.push_back(Event::IdConflict { taken: *taken });
                Err(reply)
            }
            Some(other) => Err(ErrorReply::new(ErrorKind::Malformed, format!("{other}"))),
            None => Ok(()),
        }
    }

    /// Reports the node entries of a peer's view that a merge leaves out (ids taken by another
    /// certificate).
    pub(super) fn report_conflicts(&mut self, theirs: &ClusterView) {
        let conflicts: Vec<_> = self.view.conflicts(theirs).collect();
        self.events.extend(conflicts.into_iter().map(|taken| Event::IdConflict { taken }));
    }

    /// Joins through the seeds; once in, beats, gossips with one peer at random and updates
    /// the verdicts.
    pub(super) fn sync_tick(&mut self, now: Duration) {
        if self.join_refused.is_some() {
            // Refused for good (the id is taken): the operator has to act.
            return;
        }
        if !self.joined {
            for seed in self.config.seeds.clone() {
                let busy =
                    self.outgoing.values().any(|o| matches!(&o.purpose, Purpose::Join { seed: s } if *s == seed));
                if !busy {
                    let to = Destination::Node { address: seed.clone(), id: None };
                    let body = Request::Join { node: self.config.info.clone() };
                    self.send_request(now, to, body, false, Purpose::Join { seed });
                }
            }
            return;
        }
        self.heartbeat.beat += 1;
        let peers = self.peers();
        for peer in &peers {
            self.liveness.track(now, peer);
        }
        let known: BTreeSet<&NodeId> = peers.iter().collect();
        self.liveness.retain(|id| known.contains(id));
        if !peers.is_empty() {
            let pick = (self.random() % peers.len() as u64) as usize;
            self.gossip_with(now, &peers[pick]);
        }
        self.update_liveness(now);
        self.deliver_hints(now);
    }

    /// Recomputes the verdict on each peer; reports the changes, and hands hints back to a
    /// peer seen up again at once.
    pub(super) fn update_liveness(&mut self, now: Duration) {
        let mut back = false;
        for change in self.liveness.update(now) {
            back |= change.to == crate::liveness::PeerState::Up && self.hints.contains_key(&change.peer);
            self.events.push_back(Event::PeerState { peer: change.peer, from: change.from, to: change.to });
        }
        if back {
            self.deliver_hints(now);
        }
    }

    /// The parts of this node's view that differ from `theirs` (the view's digest is made once
    /// per change of the view).
    fn delta_for(&mut self, theirs: &GossipDigest) -> Option<ClusterView> {
        let mine = self.digest.get_or_insert_with(|| self.view.digest());
        self.view.delta_between(mine, theirs)
    }

    /// This node's digest, with the heartbeats it knows (its own included).
    fn gossip_digest(&mut self) -> GossipDigest {
        let mut digest = self.digest.get_or_insert_with(|| self.view.digest()).clone();
        for entry in &mut digest.entries {
            entry.heartbeat =
                if entry.id == self.id { Some(self.heartbeat) } else { self.liveness.heartbeat(&entry.id) };
        }
        digest
    }

    /// Starts a gossip round with `peer` (unless one with it is under way).
    pub(super) fn gossip_with(&mut self, now: Duration, peer: &NodeId) {
        let busy = self.outgoing.values().any(|o| matches!(&o.purpose, Purpose::Gossip { peer: p } if p == peer));
        let Some(to) = self.destination(peer) else { return };
        if busy {
            return;
        }
        let body = Request::Gossip { from: self.id.clone(), digest: self.gossip_digest() };
        self.send_request(now, to, body, false, Purpose::Gossip { peer: peer.clone() });
    }

    /// A peer's gossip round: takes its heartbeats, answers with this node's digest and the
    /// parts of its view the peer's digest lacks. `certificate` is what the sender presented:
    /// its word on its own heartbeat is believed only if its entry names that certificate.
    pub(super) fn gossip_round(
        &mut self,
        now: Duration,
        certificate: Option<CertificateDigest>,
        from: &NodeId,
        digest: &GossipDigest,
    ) -> Response {
        let direct =
            certificate.is_some() && self.view.membership().node(from).is_some_and(|n| n.certificate == certificate);
        if direct {
            self.liveness.handle_answer(now, from);
        }
        self.take_heartbeats(now, digest, direct.then_some(from));
        self.update_liveness(now);
        let delta = self.delta_for(digest);
        Response::Gossip { digest: self.gossip_digest(), delta }
    }

    /// Takes the heartbeats of a digest; `sender`'s own is its direct word.
    fn take_heartbeats(&mut self, now: Duration, digest: &GossipDigest, sender: Option<&NodeId>) {
        for entry in &digest.entries {
            if let (Some(heartbeat), false) = (entry.heartbeat, entry.id == self.id) {
                let direct = sender == Some(&entry.id);
                self.liveness.handle_heartbeat(now, &entry.id, heartbeat, direct);
            }
        }
    }

    pub(super) fn gossip_answer(&mut self, now: Duration, peer: NodeId, answer: Result<Response, ReplicaFailure>) {
        self.heard(now, &peer, &answer);
        let Ok(Response::Gossip { digest, delta }) = answer else { return };
        self.take_heartbeats(now, &digest, Some(&peer));
        if let Some(delta) = delta {
            let address = self.view.membership().node(&peer).map(|n| n.address.clone()).unwrap_or_default();
            self.merge_from(&address, &delta);
        }
        // What the peer lacks, after what it sent.
        if let (Some(push), Some(to)) = (self.delta_for(&digest), self.destination(&peer)) {
            self.send_request(now, to, Request::Sync { view: push }, false, Purpose::Push { peer });
        }
        self.update_liveness(now);
    }

    pub(super) fn join_answer(&mut self, seed: String, answer: Result<Response, ReplicaFailure>) {
        let theirs = match answer {
            Ok(Response::Cluster(theirs)) => theirs,
            Ok(Response::Error(reply)) if reply.kind == ErrorKind::NodeIdTaken && !self.joined => {
                self.join_refused = Some(reply.message.clone());
                self.events.push_back(Event::JoinRefused { seed, reason: reply.message });
                return;
            }
            _ => return,
        };
        if self.merge_from(&seed, &theirs) && !self.joined {
            self.joined = true;
            self.events.push_back(Event::Joined { seed });
        }
    }

    /// Merges a peer's view (or part of one); reports a view that cannot be merged. Returns
    /// whether it merged.
    pub(super) fn merge_from(&mut self, address: &str, theirs: &ClusterView) -> bool {
        self.report_conflicts(theirs);
        let mut refused = None;
        let changed = self.view.merge(theirs).unwrap_or_else(|e| {
            refused = Some(format!("{e}"));
            false
        });
        if changed {
            self.view_learnt();
        }
        match refused {
            Some(reason) => {
                self.events.push_back(Event::IncompatiblePeer { address: address.into(), reason });
                false
            }
            None => true,
        }
    }

    /// Every other node of the view that is still a member.
    pub(super) fn peers(&self) -> Vec<NodeId> {
        self.view
            .membership()
            .nodes()
            .filter(|n| n.id != self.id && n.status != NodeStatus::Removed)
            .map(|n| n.id.clone())
            .collect()
    }
}
