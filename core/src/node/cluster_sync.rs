//! Keeping the cluster view in step: joining through seeds, and exchanging views with peers.
//!
//! A node without seeds starts a cluster. A node with seeds sends its entry to every seed each
//! [`sync_interval`](super::NodeConfig::sync_interval) until one answers with its view. Once in,
//! a node whose view changes saves it and sends it to every peer at once, and every interval it
//! exchanges views with one peer chosen at random, so a node that missed a change catches up
//! within a few rounds. (Digest-first gossip and failure detection replace the whole-view
//! exchange in a later step.) Views merge by the laws of [`ClusterView::merge`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::{Destination, Event, IoId, Node, Purpose};
use crate::cluster::{ClusterView, ViewError};
use crate::coordinator::ReplicaFailure;
use crate::identity::CertificateDigest;
use crate::membership::NodeInfo;
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

    /// After the view changed: saves it, sends it to every peer and reports it. Returns the id
    /// of the save.
    pub(super) fn view_changed(&mut self, now: Duration) -> IoId {
        let save = self.save_view();
        self.purge_dropped();
        self.events.push_back(Event::ViewChanged);
        for address in self.peer_addresses() {
            self.sync_with(now, address);
        }
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

    /// Joins through the seeds, or exchanges views with one peer at random.
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
        let peers = self.peer_addresses();
        if !peers.is_empty() {
            let pick = (self.random() % peers.len() as u64) as usize;
            self.sync_with(now, peers[pick].clone());
        }
    }

    /// Sends this node's view to `address` (unless an exchange with it is under way).
    pub(super) fn sync_with(&mut self, now: Duration, address: String) {
        let busy = self.outgoing.values().any(|o| matches!(&o.purpose, Purpose::Sync { address: a } if *a == address));
        if busy {
            return;
        }
        let id = self.view.membership().nodes().find(|n| n.address == address).map(|n| n.id.clone());
        let to = Destination::Node { address: address.clone(), id };
        self.send_request(now, to, Request::Sync { view: self.view.clone() }, false, Purpose::Sync { address });
    }

    pub(super) fn join_answer(&mut self, now: Duration, seed: String, answer: Result<Response, ReplicaFailure>) {
        let theirs = match answer {
            Ok(Response::Cluster(theirs)) => theirs,
            Ok(Response::Error(reply)) if reply.kind == ErrorKind::NodeIdTaken && !self.joined => {
                self.join_refused = Some(reply.message.clone());
                self.events.push_back(Event::JoinRefused { seed, reason: reply.message });
                return;
            }
            _ => return,
        };
        if self.merge_from(now, &seed, &theirs) && !self.joined {
            self.joined = true;
            self.events.push_back(Event::Joined { seed });
        }
    }

    pub(super) fn sync_answer(&mut self, now: Duration, address: String, answer: Result<Response, ReplicaFailure>) {
        if let Ok(Response::Cluster(theirs)) = answer {
            self.merge_from(now, &address, &theirs);
        }
    }

    /// Merges a peer's view; reports a view that cannot be merged. Returns whether it merged.
    fn merge_from(&mut self, now: Duration, address: &str, theirs: &ClusterView) -> bool {
        self.report_conflicts(theirs);
        let mut refused = None;
        self.update_view(now, |view| {
            view.merge(theirs).unwrap_or_else(|e| {
                refused = Some(format!("{e}"));
                false
            })
        });
        match refused {
            Some(reason) => {
                self.events.push_back(Event::IncompatiblePeer { address: address.into(), reason });
                false
            }
            None => true,
        }
    }

    /// The addresses of every other node of the view.
    fn peer_addresses(&self) -> Vec<String> {
        self.view.membership().nodes().filter(|n| n.id != self.id).map(|n| n.address.clone()).collect()
    }
}
